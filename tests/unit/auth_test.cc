// Bearer tokens per namespace: parsing with errors that name the entry, and the decisions (no token,
// unknown token, wrong namespace, read-only token writing) with their exact status codes.
#include <gtest/gtest.h>

#include "kvtier/kvstore/auth.h"

namespace kvtier {
namespace {

constexpr const char* kTokens = R"(
- token: "tenant-a-writer-0123456789"
  namespaces: ["tenant-a"]
  access: read-write
- token: "tenant-b-reader-0123456789"
  namespaces: ["tenant-b"]
  access: read
- token: "operator-everything-0123456789"
  namespaces: ["*"]
  access: read-write
)";

Authorizer Load() {
  auto a = Authorizer::Parse(kTokens);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return std::move(a).value();
}

TEST(AuthorizerTest, OffWhenNoTokensAreConfigured) {
  const Authorizer off;
  EXPECT_FALSE(off.enabled());
  EXPECT_TRUE(off.Check("", "anything", Access::kWrite).ok());
  EXPECT_TRUE(off.CheckAnyToken("").ok());
}

TEST(AuthorizerTest, TokensGrantTheirNamespacesAndRights) {
  const Authorizer a = Load();
  EXPECT_TRUE(a.Check("Bearer tenant-a-writer-0123456789", "tenant-a", Access::kWrite).ok());
  EXPECT_TRUE(a.Check("Bearer tenant-b-reader-0123456789", "tenant-b", Access::kRead).ok());
  EXPECT_TRUE(a.Check("Bearer operator-everything-0123456789", "whatever", Access::kWrite).ok());
  EXPECT_TRUE(a.CheckAnyToken("Bearer tenant-b-reader-0123456789").ok());
}

TEST(AuthorizerTest, MissingOrUnknownTokensAreUnauthenticated) {
  const Authorizer a = Load();
  const Status none = a.Check("", "tenant-a", Access::kRead);
  EXPECT_EQ(none.code(), StatusCode::kUnauthenticated);
  EXPECT_NE(none.message().find("no bearer token"), std::string::npos);
  EXPECT_EQ(a.Check("Basic dXNlcg==", "tenant-a", Access::kRead).code(), StatusCode::kUnauthenticated);
  const Status unknown = a.Check("Bearer tenant-a-writer-012345678", "tenant-a", Access::kRead);  // one short
  EXPECT_EQ(unknown.code(), StatusCode::kUnauthenticated);
  EXPECT_EQ(unknown.message(), "unknown bearer token");
  EXPECT_EQ(a.CheckAnyToken("Bearer nope-nope-nope-nope").code(), StatusCode::kUnauthenticated);
}

TEST(AuthorizerTest, OtherNamespacesAndWritesWithReadTokensAreDenied) {
  const Authorizer a = Load();
  const Status other = a.Check("Bearer tenant-a-writer-0123456789", "tenant-b", Access::kRead);
  EXPECT_EQ(other.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(other.message().find("no access to namespace 'tenant-b'"), std::string::npos) << other.message();
  const Status write = a.Check("Bearer tenant-b-reader-0123456789", "tenant-b", Access::kWrite);
  EXPECT_EQ(write.code(), StatusCode::kPermissionDenied);
  EXPECT_NE(write.message().find("may only read"), std::string::npos) << write.message();
}

TEST(AuthorizerTest, BadFilesNameTheEntryAndField) {
  struct Case {
    const char* yaml;
    const char* fragment;
  } cases[] = {
      {"[]", "non-empty list"},
      {"- token: short\n  namespaces: [a]\n  access: read\n", "[0].token: shorter than 16"},
      {"- token: aaaaaaaaaaaaaaaaaaaa\n  namespaces: []\n  access: read\n", "[0].namespaces"},
      {"- token: aaaaaaaaaaaaaaaaaaaa\n  namespaces: [a]\n  access: admin\n", "[0].access: expected read or read-write"},
      {"- token: aaaaaaaaaaaaaaaaaaaa\n  namespaces: [a]\n  access: read\n  role: x\n", "unknown key 'role'"},
      {"- token: aaaaaaaaaaaaaaaaaaaa\n  namespaces: [a]\n  access: read\n"
       "- token: aaaaaaaaaaaaaaaaaaaa\n  namespaces: [b]\n  access: read\n", "[1].token: listed twice"},
      {"- [unbalanced", "not valid YAML"},
  };
  for (const Case& c : cases) {
    auto a = Authorizer::Parse(c.yaml, "tokens");
    ASSERT_FALSE(a.ok()) << c.yaml;
    EXPECT_EQ(a.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(a.status().message().find(c.fragment), std::string::npos) << a.status().message();
  }
  EXPECT_EQ(Authorizer::Load("/nonexistent/tokens.yaml").status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace kvtier
