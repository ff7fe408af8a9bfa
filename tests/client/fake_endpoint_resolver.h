// A resolver whose answer the test sets, for tests of the teacher pool's
// discovery (client/endpoint_resolver.h).
#ifndef RETORT_TESTS_CLIENT_FAKE_ENDPOINT_RESOLVER_H_
#define RETORT_TESTS_CLIENT_FAKE_ENDPOINT_RESOLVER_H_

#include <algorithm>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "client/endpoint_resolver.h"

namespace retort::client {

class FakeEndpointResolver : public EndpointResolver {
 public:
  explicit FakeEndpointResolver(std::vector<std::string> addresses)
      : state_(std::make_shared<State>()) {
    Set(std::move(addresses));
  }

  // Later Resolve calls answer `addresses`, sorted and without duplicates as
  // the contract says.
  void Set(std::vector<std::string> addresses) {
    std::sort(addresses.begin(), addresses.end());
    addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
    absl::MutexLock lock(&state_->mu);
    state_->addresses = std::move(addresses);
  }

  absl::StatusOr<std::vector<std::string>> Resolve() override {
    absl::MutexLock lock(&state_->mu);
    return state_->addresses;
  }
  bool IsDynamic() const override { return true; }
  std::string Describe() const override { return "fake"; }

 private:
  struct State {
    absl::Mutex mu;
    std::vector<std::string> addresses ABSL_GUARDED_BY(mu);
  };
  std::shared_ptr<State> state_;
};

}  // namespace retort::client

#endif  // RETORT_TESTS_CLIENT_FAKE_ENDPOINT_RESOLVER_H_
