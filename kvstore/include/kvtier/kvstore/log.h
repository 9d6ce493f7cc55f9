// Minimal leveled logging to stderr: `KVTIER_LOG(kInfo) << "serving on " << addr;`
// One line per statement, written with a single write(2) so concurrent lines do not interleave.
// Thread-safe. The threshold is process-wide (SetLogLevel), read with relaxed atomics.
#pragma once

#include <sstream>
#include <string_view>

namespace kvtier {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

void SetLogLevel(LogLevel level);
LogLevel GetLogLevel();
bool ParseLogLevel(std::string_view text, LogLevel* out);

class LogLine {
 public:
  LogLine(LogLevel level, const char* file, int line);
  ~LogLine();
  LogLine(const LogLine&) = delete;
  LogLine& operator=(const LogLine&) = delete;
  std::ostringstream& stream() { return out_; }

 private:
  std::ostringstream out_;
};

}  // namespace kvtier

// A for-statement (not an if) so the macro nests under an unbraced if/else without ambiguity.
#define KVTIER_LOG(level)                                                                          \
  for (bool kvtier_log_on_ = ::kvtier::LogLevel::level >= ::kvtier::GetLogLevel(); kvtier_log_on_; \
       kvtier_log_on_ = false)                                                                     \
  ::kvtier::LogLine(::kvtier::LogLevel::level, __FILE__, __LINE__).stream()
