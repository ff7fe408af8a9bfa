// Channels to teacher servers: TLS or plaintext, client certificates, the
// bearer token, and keepalive settings matched to the server's (pings every
// `keepalive_time`, a peer that does not answer within `keepalive_timeout` is
// dropped, so a frozen teacher is noticed even while a call waits).
#ifndef RETORT_CLIENT_TEACHER_CHANNEL_H_
#define RETORT_CLIENT_TEACHER_CHANNEL_H_

#include <memory>
#include <string>

#include <grpcpp/channel.h>
#include <grpcpp/client_context.h>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace retort::client {

struct TeacherChannelOptions {
  std::string tls_ca_path;    // PEM roots; set: TLS (else plaintext)
  std::string tls_cert_path;  // client certificate for mutual TLS
  std::string tls_key_path;
  std::string tls_server_name;  // overrides the name checked in the certificate
  std::string auth_token;       // sent as "authorization: Bearer <token>"
  bool allow_insecure_token = false;
  absl::Duration keepalive_time = absl::Seconds(10);  // not below the server's 5 s minimum
  absl::Duration keepalive_timeout = absl::Seconds(5);
};

// Builds a channel to `address` (host:port). INVALID_ARGUMENT naming the flag
// for inconsistent options; NOT_FOUND for unreadable files;
// FAILED_PRECONDITION for a token over plaintext without
// allow_insecure_token.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateTeacherChannel(
    const std::string& address, const TeacherChannelOptions& options);

// Adds the bearer token (if any) to a call.
void AddCallCredentials(const TeacherChannelOptions& options, grpc::ClientContext* context);

}  // namespace retort::client

#endif  // RETORT_CLIENT_TEACHER_CHANNEL_H_
