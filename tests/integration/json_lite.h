// A small strict JSON parser for tests (RFC 8259: objects, arrays, strings with escapes, numbers,
// true/false/null), so tests that read Prometheus' HTTP API or check the Grafana dashboard need no
// JSON library or interpreter. Not for production: no depth limit beyond the input's size.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvtier::testing {

struct Json {
  enum class Kind { kNull, kBool, kNumber, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool boolean = false;
  double number = 0;
  std::string string;
  std::vector<Json> items;                           // kArray
  std::vector<std::pair<std::string, Json>> members;  // kObject, in document order

  // The member named `key` of an object; nullptr when absent or not an object.
  const Json* Find(std::string_view key) const;
  bool is_string() const { return kind == Kind::kString; }
  bool is_array() const { return kind == Kind::kArray; }
  bool is_object() const { return kind == Kind::kObject; }
};

// The document, or nullopt with `error` saying where it went wrong.
std::optional<Json> ParseJson(std::string_view text, std::string* error);

// Calls fn(value) for every string value stored under `key` anywhere in the document.
template <typename Fn>
void ForEachStringMember(const Json& json, std::string_view key, Fn&& fn) {
  for (const auto& [name, value] : json.members) {
    if (name == key && value.is_string()) fn(value.string);
    ForEachStringMember(value, key, fn);
  }
  for (const Json& item : json.items) ForEachStringMember(item, key, fn);
}

}  // namespace kvtier::testing
