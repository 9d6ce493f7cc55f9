// Authorizer: per-namespace bearer tokens with read or read-write rights (DESIGN §9).
//
// Tokens live in their own YAML file (`auth.tokens_file`, e.g. a Kubernetes Secret), never in the main
// config, so the effective config can be logged. Each entry grants one token access to a list of
// namespaces ("*" = all):
//
//   - token: "a-long-random-string"       # at least 16 characters
//     namespaces: ["tenant-a", "tenant-b"]
//     access: read-write                    # or read
//
// A request carries `authorization: Bearer <token>`. No or unknown token: UNAUTHENTICATED; a known
// token without the right for the namespace: PERMISSION_DENIED. Tokens are compared in constant time
// against every entry, so timing does not reveal a prefix. With no file configured the authorizer is
// off and every request passes (a trusted network). Immutable after Load: thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "kvtier/api/status.h"

namespace kvtier {

enum class Access { kRead, kWrite };

struct TokenGrant {
  std::string token;
  std::vector<std::string> namespaces;  // "*" matches every namespace
  bool write = false;                   // read-write; reads are always allowed
};

class Authorizer {
 public:
  Authorizer() = default;  // off: everything passes
  explicit Authorizer(std::vector<TokenGrant> grants) : grants_(std::move(grants)) {}

  // Parses a tokens file. INVALID_ARGUMENT naming the entry and field; NOT_FOUND when unreadable.
  static Result<Authorizer> Load(const std::string& path);
  static Result<Authorizer> Parse(std::string_view yaml, const std::string& name = "tokens file");

  bool enabled() const { return !grants_.empty(); }
  // `authorization` is the request's authorization metadata value (empty when absent).
  Status Check(std::string_view authorization, std::string_view name_space, Access access) const;
  // For requests that name no namespace (Stats): any known token.
  Status CheckAnyToken(std::string_view authorization) const;

 private:
  const TokenGrant* Find(std::string_view authorization, Status* error) const;

  std::vector<TokenGrant> grants_;
};

}  // namespace kvtier
