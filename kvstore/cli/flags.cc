#include "flags.h"

#include <charconv>
#include <iostream>
#include <sstream>

#include "kvtier/kvstore/config.h"

namespace kvtier::cli {

FlagSet::FlagSet(std::string usage_line, std::string summary)
    : usage_line_(std::move(usage_line)), summary_(std::move(summary)) {}

void FlagSet::AddCustom(const std::string& name, const std::string& value_name,
                        std::function<Status(const std::string&)> setter, const std::string& help) {
  flags_[name] = Flag{value_name, help, std::move(setter)};
  order_.push_back(name);
}

void FlagSet::AddString(const std::string& name, const std::string& value_name, std::string* target,
                        const std::string& help) {
  AddCustom(name, value_name, [target](const std::string& v) { *target = v; return Status::Ok(); }, help);
}

void FlagSet::AddBytes(const std::string& name, uint64_t* target, const std::string& help) {
  AddCustom(name, "SIZE", [name, target](const std::string& v) {
    auto bytes = ParseByteSize(v);
    if (!bytes.ok()) return InvalidArgument("--" + name + ": " + bytes.status().message());
    *target = *bytes;
    return Status::Ok();
  }, help);
}

void FlagSet::AddInt(const std::string& name, int* target, const std::string& help) {
  AddCustom(name, "N", [name, target](const std::string& v) {
    int parsed = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), parsed);
    if (ec != std::errc() || end != v.data() + v.size()) return InvalidArgument("--" + name + ": '" + v + "' is not an integer");
    *target = parsed;
    return Status::Ok();
  }, help);
}

void FlagSet::AddBool(const std::string& name, bool* target, const std::string& help) {
  flags_[name] = Flag{"", help, [target](const std::string&) { *target = true; return Status::Ok(); }};
  order_.push_back(name);
}

Status FlagSet::Parse(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      help_ = true;
      continue;
    }
    if (arg.rfind("--", 0) != 0) return InvalidArgument("unexpected argument '" + arg + "' (see --help)");
    std::string name = arg.substr(2);
    std::string value;
    bool has_value = false;
    if (const size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      has_value = true;
    }
    auto it = flags_.find(name);
    if (it == flags_.end()) return InvalidArgument("unknown flag --" + name + " (see --help)");
    if (it->second.value_name.empty()) {
      if (has_value) return InvalidArgument("flag --" + name + " takes no value");
    } else if (!has_value) {
      if (i + 1 >= argc) return InvalidArgument("flag --" + name + " needs a value");
      value = argv[++i];
    }
    given_.emplace_back(name, value);
  }
  return Status::Ok();
}

Status FlagSet::Apply() {
  for (const auto& [name, value] : given_) KVTIER_RETURN_IF_ERROR(flags_[name].set(value));
  return Status::Ok();
}

bool FlagSet::was_set(const std::string& name) const {
  for (const auto& g : given_) {
    if (g.first == name) return true;
  }
  return false;
}

std::string FlagSet::Usage() const {
  std::ostringstream out;
  out << "usage: " << usage_line_ << "\n\n" << summary_ << "\n\nflags:\n";
  for (const std::string& name : order_) {
    const Flag& f = flags_.at(name);
    std::string left = "  --" + name + (f.value_name.empty() ? "" : " " + f.value_name);
    out << left;
    if (left.size() < 30) out << std::string(30 - left.size(), ' ');
    else out << "\n" << std::string(30, ' ');
    std::string help = f.help;
    for (size_t pos = 0; (pos = help.find('\n', pos)) != std::string::npos; pos += 31) help.insert(pos + 1, 30, ' ');
    out << help << "\n";
  }
  out << "  --help                      print this help\n";
  return out.str();
}

int FailCommand(std::string_view command, const Status& status) {
  std::cerr << "kvtier " << command << ": " << status.ToString() << "\n";
  return 1;
}

int ParseFlagsOrExit(FlagSet& flags, int argc, char** argv, int first, std::string_view command) {
  Status s = flags.Parse(argc, argv, first);
  if (s.ok() && flags.help_requested()) {
    std::cout << flags.Usage();
    return 0;
  }
  if (s.ok()) s = flags.Apply();
  if (!s.ok()) return FailCommand(command, s);
  return -1;
}

}  // namespace kvtier::cli
