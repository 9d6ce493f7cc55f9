#include "kvtier/kvstore/auth.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <iterator>

namespace kvtier {
namespace {

constexpr size_t kMinTokenChars = 16;
constexpr std::string_view kBearer = "Bearer ";

// Compares without an early exit, so the time taken does not depend on where the strings differ.
bool ConstantTimeEqual(std::string_view a, std::string_view b) {
  unsigned diff = static_cast<unsigned>(a.size() ^ b.size());
  const size_t n = std::max(a.size(), b.size());
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned>(x ^ y);
  }
  return diff == 0;
}

Result<TokenGrant> ParseGrant(const YAML::Node& node, const std::string& where) {
  if (!node.IsMap()) return InvalidArgument(where + ": expected a mapping with token, namespaces, access");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    if (key != "token" && key != "namespaces" && key != "access") {
      return InvalidArgument(where + ": unknown key '" + key + "'");
    }
  }
  TokenGrant grant;
  if (!node["token"] || !node["token"].IsScalar()) return InvalidArgument(where + ".token: missing");
  grant.token = node["token"].Scalar();
  if (grant.token.size() < kMinTokenChars) {
    return InvalidArgument(where + ".token: shorter than " + std::to_string(kMinTokenChars) + " characters");
  }
  const YAML::Node ns = node["namespaces"];
  if (!ns || !ns.IsSequence() || ns.size() == 0) {
    return InvalidArgument(where + ".namespaces: expected a non-empty list (\"*\" for all)");
  }
  for (const auto& n : ns) {
    if (!n.IsScalar() || n.Scalar().empty()) return InvalidArgument(where + ".namespaces: empty entry");
    grant.namespaces.push_back(n.Scalar());
  }
  const std::string access = node["access"] && node["access"].IsScalar() ? node["access"].Scalar() : "";
  if (access != "read" && access != "read-write") {
    return InvalidArgument(where + ".access: expected read or read-write, got '" + access + "'");
  }
  grant.write = access == "read-write";
  return grant;
}

}  // namespace

Result<Authorizer> Authorizer::Parse(std::string_view yaml, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(name + " is not valid YAML: " + e.what());
  }
  if (!root.IsSequence() || root.size() == 0) return InvalidArgument(name + ": expected a non-empty list of tokens");
  std::vector<TokenGrant> grants;
  for (size_t i = 0; i < root.size(); ++i) {
    auto grant = ParseGrant(root[i], name + "[" + std::to_string(i) + "]");
    if (!grant.ok()) return grant.status();
    for (const TokenGrant& g : grants) {
      if (g.token == grant->token) return InvalidArgument(name + "[" + std::to_string(i) + "].token: listed twice");
    }
    grants.push_back(std::move(grant).value());
  }
  return Authorizer(std::move(grants));
}

Result<Authorizer> Authorizer::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot read tokens file " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return Parse(text, path);
}

const TokenGrant* Authorizer::Find(std::string_view authorization, Status* error) const {
  if (authorization.empty()) {
    *error = Status(StatusCode::kUnauthenticated, "no bearer token (metadata 'authorization: Bearer <token>')");
    return nullptr;
  }
  if (!authorization.starts_with(kBearer)) {
    *error = Status(StatusCode::kUnauthenticated, "authorization metadata is not 'Bearer <token>'");
    return nullptr;
  }
  const std::string_view token = authorization.substr(kBearer.size());
  const TokenGrant* found = nullptr;
  for (const TokenGrant& g : grants_) {  // every entry, always: no early exit
    if (ConstantTimeEqual(g.token, token)) found = &g;
  }
  if (found == nullptr) *error = Status(StatusCode::kUnauthenticated, "unknown bearer token");
  return found;
}

Status Authorizer::Check(std::string_view authorization, std::string_view name_space, Access access) const {
  if (!enabled()) return Status::Ok();
  Status error;
  const TokenGrant* grant = Find(authorization, &error);
  if (grant == nullptr) return error;
  const bool covers = std::any_of(grant->namespaces.begin(), grant->namespaces.end(),
                                  [&](const std::string& n) { return n == "*" || n == name_space; });
  if (!covers) {
    return Status(StatusCode::kPermissionDenied,
                  "the token has no access to namespace '" + std::string(name_space) + "'");
  }
  if (access == Access::kWrite && !grant->write) {
    return Status(StatusCode::kPermissionDenied,
                  "the token may only read namespace '" + std::string(name_space) + "'");
  }
  return Status::Ok();
}

Status Authorizer::CheckAnyToken(std::string_view authorization) const {
  if (!enabled()) return Status::Ok();
  Status error;
  return Find(authorization, &error) != nullptr ? Status::Ok() : error;
}

}  // namespace kvtier
