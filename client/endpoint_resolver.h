// EndpointResolver: turns the --teachers target into teacher addresses, and
// is asked again during the run so a pool can grow and shrink.
//
//   "host:port,host:port"  a static list (resolved once; gRPC resolves names)
//   "dns:///name:port"     every address `name` resolves to (A and AAAA), as
//                          ip:port, re-resolved on each call: a DNS name for a
//                          teacher Service (Kubernetes headless Services give
//                          one A record per ready pod) follows the pool
//
// An interface so the pool can be tested with a fake resolver.
#ifndef RETORT_CLIENT_ENDPOINT_RESOLVER_H_
#define RETORT_CLIENT_ENDPOINT_RESOLVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace retort::client {

class EndpointResolver {
 public:
  virtual ~EndpointResolver() = default;
  // The current addresses (host:port), sorted and without duplicates.
  // UNAVAILABLE when a name does not resolve right now.
  virtual absl::StatusOr<std::vector<std::string>> Resolve() = 0;
  // Whether Resolve can change its answer (worth calling again).
  virtual bool IsDynamic() const = 0;
  // The target as the user gave it, for messages.
  virtual std::string Describe() const = 0;
};

// INVALID_ARGUMENT naming `flag` for an empty list, an entry that is not
// host:port with a port in 1..65535, or an unknown scheme.
absl::StatusOr<std::unique_ptr<EndpointResolver>> CreateEndpointResolver(
    const std::string& target, const std::string& flag = "teachers");

}  // namespace retort::client

#endif  // RETORT_CLIENT_ENDPOINT_RESOLVER_H_
