// Converts LibTorch exceptions into absl::Status at library boundaries.
//
// LibTorch reports errors by throwing c10::Error, whose what() carries a C++
// stack trace. Users must never see that: every call into LibTorch that can
// fail on user input goes through TorchCall, which returns the message
// without the backtrace, prefixed with what the caller was doing.
#ifndef RETORT_COMMON_TORCH_STATUS_H_
#define RETORT_COMMON_TORCH_STATUS_H_

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace retort {

// Returns the message of the exception currently being handled, with any
// LibTorch backtrace removed. Call only from inside a catch block.
std::string CurrentExceptionMessage();

namespace internal {
template <typename T>
struct TorchCallResult {
  using type = absl::StatusOr<T>;
};
template <>
struct TorchCallResult<void> {
  using type = absl::Status;
};
template <>
struct TorchCallResult<absl::Status> {
  using type = absl::Status;
};
template <typename T>
struct TorchCallResult<absl::StatusOr<T>> {
  using type = absl::StatusOr<T>;
};
}  // namespace internal

// Runs `fn` and turns any exception into an INVALID_ARGUMENT status (LibTorch
// throws c10::Error for bad shapes and dtypes) whose message starts with
// `context`. `fn` may return void (giving absl::Status), absl::Status,
// absl::StatusOr<T>, or a plain T (giving absl::StatusOr<T>).
template <typename Fn>
auto TorchCall(absl::string_view context, Fn&& fn) ->
    typename internal::TorchCallResult<std::invoke_result_t<Fn>>::type {
  using Raw = std::invoke_result_t<Fn>;
  using Result = typename internal::TorchCallResult<Raw>::type;
  try {
    if constexpr (std::is_void_v<Raw>) {
      fn();
      return absl::OkStatus();
    } else {
      return Result(fn());
    }
  } catch (...) {
    std::string message = CurrentExceptionMessage();
    if (!context.empty()) message = std::string(context) + ": " + message;
    return absl::InvalidArgumentError(message);
  }
}

}  // namespace retort

#endif  // RETORT_COMMON_TORCH_STATUS_H_
