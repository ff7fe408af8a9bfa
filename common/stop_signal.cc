#include "common/stop_signal.h"

#include <atomic>
#include <csignal>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace retort {
namespace {

// The one piece of process state a signal handler can set.
std::atomic<int> received_signal{0};

constexpr char kPreemptedPayload[] = "retort.dev/preempted";

void OnStopSignal(int signal) {
  int expected = 0;
  received_signal.compare_exchange_strong(expected, signal);
  // A second signal of this kind terminates as it would have without us.
  std::signal(signal, SIG_DFL);
}

struct NamedSignal {
  const char* name;
  int number;
};
constexpr NamedSignal kSignals[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT},
                                    {"TERM", SIGTERM}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2},
                                    {"ALRM", SIGALRM}, {"XCPU", SIGXCPU}};

}  // namespace

absl::Status InstallStopSignals(const std::vector<int>& signals) {
  for (int s : signals) {
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = OnStopSignal;
    action.sa_flags = SA_RESTART;  // interrupted system calls carry on
    sigemptyset(&action.sa_mask);
    if (sigaction(s, &action, nullptr) != 0) {
      return absl::InternalError(
          absl::StrCat("cannot install a handler for ", SignalName(s), ": ", std::strerror(errno)));
    }
  }
  return absl::OkStatus();
}

int StopSignalReceived() { return received_signal.load(); }

absl::StatusOr<int> ParseSignal(absl::string_view name) {
  std::string upper = absl::AsciiStrToUpper(name);
  absl::string_view bare = upper;
  absl::ConsumePrefix(&bare, "SIG");
  int number = 0;
  if (absl::SimpleAtoi(bare, &number)) {
    for (const NamedSignal& s : kSignals) {
      if (s.number == number) return number;
    }
  } else {
    for (const NamedSignal& s : kSignals) {
      if (bare == s.name) return s.number;
    }
  }
  return absl::InvalidArgumentError(
      absl::StrCat("'", name,
                   "' is not a signal a run can stop on; use one of SIGTERM, SIGINT, SIGHUP, "
                   "SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU (names or numbers)"));
}

std::string SignalName(int signal) {
  for (const NamedSignal& s : kSignals) {
    if (s.number == signal) return absl::StrCat("SIG", s.name);
  }
  return absl::StrCat("signal ", signal);
}

absl::Status PreemptedError(absl::string_view message) {
  absl::Status status = absl::AbortedError(message);
  status.SetPayload(kPreemptedPayload, absl::Cord("1"));
  return status;
}

bool IsPreempted(const absl::Status& status) {
  return absl::IsAborted(status) && status.GetPayload(kPreemptedPayload).has_value();
}

}  // namespace retort
