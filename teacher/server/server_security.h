// Transport security and bearer-token authentication for the teacher server.
//
// Plaintext by default (the server listens on loopback unless told
// otherwise). With a certificate and key it serves TLS; with a client CA as
// well it requires and verifies client certificates (mutual TLS). A bearer
// token, when set, must arrive in every call's "authorization" metadata as
// "Bearer <token>"; sending it over plaintext is refused unless explicitly
// allowed, because anyone on the path could read it.
#ifndef RETORT_TEACHER_SERVER_SERVER_SECURITY_H_
#define RETORT_TEACHER_SERVER_SERVER_SECURITY_H_

#include <memory>
#include <string>

#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_context.h>

#include "absl/status/statusor.h"

namespace retort::teacher {

struct ServerSecurityOptions {
  std::string tls_cert_path;       // PEM certificate chain; empty: plaintext
  std::string tls_key_path;        // PEM private key
  std::string tls_client_ca_path;  // PEM CA; set: clients must present a certificate it signed
  std::string auth_token;          // empty: no token required
  bool allow_insecure_token = false;
};

// Reads the files and builds the credentials. INVALID_ARGUMENT naming the
// flag for inconsistent options (a key without a certificate, a client CA
// without TLS); NOT_FOUND naming unreadable files; FAILED_PRECONDITION for a
// token over plaintext without allow_insecure_token.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> BuildServerCredentials(
    const ServerSecurityOptions& options);

// OK when `token` is empty or the call carries "Bearer <token>" (compared in
// constant time); UNAUTHENTICATED otherwise.
grpc::Status CheckBearerToken(const grpc::ServerContext& context, const std::string& token);

}  // namespace retort::teacher

#endif  // RETORT_TEACHER_SERVER_SERVER_SECURITY_H_
