// FlagSet: the small flag parser behind every `kvtier` subcommand. Accepts `--name value` and
// `--name=value`; boolean flags take no value. Values are applied in a second step (Apply), so
// `serve` can load its config file first and let the flags override it. Not thread-safe.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier::cli {

class FlagSet {
 public:
  FlagSet(std::string usage_line, std::string summary);

  // `value_name` is what --help shows for the value, e.g. ADDR or FILE.
  void AddString(const std::string& name, const std::string& value_name, std::string* target, const std::string& help);
  void AddBytes(const std::string& name, uint64_t* target, const std::string& help);
  void AddInt(const std::string& name, int* target, const std::string& help);
  void AddBool(const std::string& name, bool* target, const std::string& help);
  // A flag whose value is handed to `setter` (which validates it).
  void AddCustom(const std::string& name, const std::string& value_name, std::function<Status(const std::string&)> setter,
                 const std::string& help);

  // Reads argv[first..]. Unknown flags and missing values are INVALID_ARGUMENT. `--help` sets
  // help_requested(). Positional arguments are refused.
  Status Parse(int argc, char** argv, int first);
  // Writes every flag that was given into its target, in command-line order.
  Status Apply();
  bool help_requested() const { return help_; }
  bool was_set(const std::string& name) const;
  std::string Usage() const;

 private:
  struct Flag {
    std::string value_name;  // empty for booleans
    std::string help;
    std::function<Status(const std::string&)> set;
  };
  std::string usage_line_;
  std::string summary_;
  std::map<std::string, Flag> flags_;
  std::vector<std::string> order_;
  std::vector<std::pair<std::string, std::string>> given_;
  bool help_ = false;
};

// Reports a subcommand's failure ("kvtier <command>: <status>" on stderr) and returns its exit code, 1.
int FailCommand(std::string_view command, const Status& status);

// Parses argv[first..] and applies the flags. Returns -1 to go on, or the exit code to return: 0 after --help
// (the usage printed), 1 after a bad flag (reported as FailCommand does).
int ParseFlagsOrExit(FlagSet& flags, int argc, char** argv, int first, std::string_view command);

}  // namespace kvtier::cli
