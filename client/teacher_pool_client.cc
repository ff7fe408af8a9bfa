#include "client/teacher_pool_client.h"

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace retort::client {

struct TeacherPoolClient::PendingRequest {
  uint64_t id = 0;
  torch::Tensor inputs;
  double temperature = 1;
  std::vector<std::string> hidden_layers;
  torch::Tensor query_ids;
  std::promise<absl::StatusOr<teacher::Answer>> promise;
  bool done = false;
  bool queued = false;
  int live_attempts = 0;
  int attempts = 0;
  absl::Time created;
  std::string last_error;  // of the latest failed attempt
};

struct TeacherPoolClient::Endpoint {
  struct Attempt {
    std::shared_ptr<PendingRequest> request;
    absl::Time sent;
  };
  std::string address;
  State state = State::kProbing;
  std::shared_ptr<RemoteTeacherClient> client;  // null until admitted; dropped when down
  int limit = 1;
  int64_t answered = 0;
  std::map<uint64_t, Attempt> in_flight;  // by attempt number
  std::string last_error;
  absl::Time next_probe = absl::InfinitePast();
  absl::Duration backoff = absl::Milliseconds(100);
  bool probing = false;
  uint64_t generation = 0;                       // counts the clients created for this endpoint
  absl::Time busy_until = absl::InfinitePast();  // after RESOURCE_EXHAUSTED
  absl::Duration busy_backoff = absl::Milliseconds(50);
};

namespace {

const char* StateName(int state) {
  static const char* const kNames[] = {"probing", "serving", "down", "refused"};
  return kNames[state];
}

bool SameTeacher(const v1::TeacherFingerprint& a, const v1::TeacherFingerprint& b) {
  return a.weights_sha256() == b.weights_sha256() && a.architecture() == b.architecture() &&
         a.num_classes() == b.num_classes() && a.tokenizer_sha256() == b.tokenizer_sha256();
}

std::string Short(const v1::TeacherFingerprint& fp) {
  return absl::StrCat(fp.weights_sha256().substr(0, 12), " (", fp.architecture(), ")");
}

// Errors about the request itself: another teacher would say the same.
bool IsRequestError(absl::StatusCode code) {
  return code == absl::StatusCode::kInvalidArgument || code == absl::StatusCode::kOutOfRange ||
         code == absl::StatusCode::kUnimplemented;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TeacherPoolClient>> TeacherPoolClient::Create(Options options) {
  if (options.resolver == nullptr) return absl::InvalidArgumentError("the pool needs endpoints");
  if (options.teacher_wait <= absl::ZeroDuration() ||
      options.attempt_timeout <= absl::ZeroDuration() ||
      options.health_interval <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--teacher_wait and the pool's intervals must be positive");
  }
  std::unique_ptr<TeacherPoolClient> pool(new TeacherPoolClient(std::move(options)));
  pool->Resolve();
  pool->prober_ = std::thread([p = pool.get()] { p->ProberLoop(); });
  pool->dispatcher_ = std::thread([p = pool.get()] { p->DispatcherLoop(); });

  const absl::Time deadline = absl::Now() + pool->options_.connect_timeout;
  absl::MutexLock lock(&pool->mu_);
  auto ready = [p = pool.get()]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
    for (const auto& [address, endpoint] : p->endpoints_) {
      if (endpoint->state == State::kServing) return true;
    }
    return false;
  };
  while (!ready()) {
    bool all_refused = !pool->endpoints_.empty();
    for (const auto& [address, endpoint] : pool->endpoints_) {
      all_refused &= endpoint->state == State::kRefused;
    }
    if (all_refused) {
      return absl::FailedPreconditionError(
          absl::StrCat("every teacher in ", pool->options_.resolver->Describe(),
                       " was refused: ", pool->DescribeEndpoints()));
    }
    // At the deadline, let first probes still under way finish, so the error
    // says why each endpoint failed.
    bool first_probes_running = false;
    for (const auto& [address, endpoint] : pool->endpoints_) {
      first_probes_running |= endpoint->probing && endpoint->last_error.empty();
    }
    if (absl::Now() >= deadline &&
        (!first_probes_running || absl::Now() >= deadline + pool->ProbeConnectTimeout())) {
      return absl::UnavailableError(absl::StrCat(
          "no teacher in ", pool->options_.resolver->Describe(), " became ready within ",
          absl::FormatDuration(pool->options_.connect_timeout), ": ", pool->DescribeEndpoints()));
    }
    pool->mu_.AwaitWithDeadline(absl::Condition(&ready),
                                std::min(deadline, absl::Now() + absl::Milliseconds(100)));
  }
  pool->started_ = true;
  for (const auto& [address, endpoint] : pool->endpoints_) {
    pool->Log(absl::StrCat(address, " ", StateName(static_cast<int>(endpoint->state)),
                           endpoint->last_error.empty() ? "" : ": ", endpoint->last_error));
  }
  return pool;
}

TeacherPoolClient::TeacherPoolClient(Options options) : options_(std::move(options)) {}

absl::Duration TeacherPoolClient::ProbeConnectTimeout() const {
  return std::min(std::max(2 * options_.health_timeout, absl::Seconds(1)),
                  options_.connect_timeout);
}

TeacherPoolClient::~TeacherPoolClient() {
  {
    absl::MutexLock lock(&mu_);
    if (stats_.requests > 0) {
      Log(absl::StrCat(stats_.requests, " requests, ", stats_.answered, " answered, ",
                       stats_.resent, " re-sent, ", stats_.late_answers, " late answers dropped, ",
                       stats_.endpoints_down, " times a teacher was taken out of service"));
    }
    shutdown_ = true;
    // Unblocks any thread stuck writing to a frozen teacher, so the joins
    // below do not wait for keepalive.
    for (auto& [address, endpoint] : endpoints_) {
      if (endpoint->client != nullptr) endpoint->client->Cancel();
    }
  }
  if (prober_.joinable()) prober_.join();
  if (dispatcher_.joinable()) dispatcher_.join();
  std::vector<std::shared_ptr<RemoteTeacherClient>> clients;
  std::vector<std::shared_ptr<PendingRequest>> unanswered;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [address, endpoint] : endpoints_) {
      if (endpoint->client != nullptr) clients.push_back(std::move(endpoint->client));
      for (auto& [attempt, a] : endpoint->in_flight) unanswered.push_back(a.request);
      endpoint->in_flight.clear();
    }
    for (auto& [id, request] : queue_) unanswered.push_back(request);
    queue_.clear();
    for (auto& r : retired_) clients.push_back(std::move(r));
    retired_.clear();
  }
  for (auto& client : clients) client->Shutdown();
  clients.clear();  // joins their reader threads: no OnAnswer runs after this
  std::vector<std::shared_ptr<PendingRequest>> cancelled;
  {
    absl::MutexLock lock(&mu_);
    for (auto& request : unanswered) {
      if (!request->done) {
        request->done = true;
        cancelled.push_back(request);
      }
    }
  }
  for (auto& request : cancelled) {
    request->promise.set_value(absl::CancelledError("the teacher pool was closed"));
  }
}

void TeacherPoolClient::Log(const std::string& line) const {
  if (options_.verbose && started_) std::fprintf(stderr, "[teacher pool] %s\n", line.c_str());
}

std::string TeacherPoolClient::DescribeEndpoints() const {
  std::vector<std::string> parts;
  for (const auto& [address, endpoint] : endpoints_) {
    parts.push_back(absl::StrCat(address, " (", StateName(static_cast<int>(endpoint->state)),
                                 endpoint->last_error.empty() ? "" : ": ", endpoint->last_error,
                                 ")"));
  }
  if (parts.empty()) {
    return absl::StrCat("no endpoints",
                        resolve_error_.empty() ? "" : absl::StrCat(" (", resolve_error_, ")"));
  }
  return absl::StrJoin(parts, "; ");
}

void TeacherPoolClient::Resolve() {
  absl::StatusOr<std::vector<std::string>> addresses = options_.resolver->Resolve();
  absl::MutexLock lock(&mu_);
  if (!addresses.ok()) {
    if (resolve_error_ != addresses.status().message()) {
      resolve_error_ = std::string(addresses.status().message());
      Log(absl::StrCat(resolve_error_, "; keeping the endpoints known so far"));
    }
    return;
  }
  resolve_error_.clear();
  for (const std::string& address : *addresses) {
    if (endpoints_.count(address) > 0) continue;
    auto endpoint = std::make_shared<Endpoint>();
    endpoint->address = address;
    endpoints_[address] = endpoint;
    if (options_.resolver->IsDynamic()) Log(absl::StrCat(address, " joined"));
  }
  for (auto it = endpoints_.begin(); it != endpoints_.end();) {
    if (std::binary_search(addresses->begin(), addresses->end(), it->first)) {
      ++it;
      continue;
    }
    MarkDown(*it->second, State::kDown, "left the pool");
    Log(absl::StrCat(it->first, " left the pool"));
    it = endpoints_.erase(it);
  }
}

bool TeacherPoolClient::MarkDown(Endpoint& endpoint, State state, const std::string& why) {
  const bool was_serving = endpoint.state == State::kServing;
  endpoint.state = state;
  endpoint.last_error = why;
  if (endpoint.client != nullptr) {
    // Cancel ends the stream and unblocks writers; the client is destroyed
    // (failing its requests into OnAnswer, which ignores them) later, outside
    // the lock, by the prober.
    endpoint.client->Cancel();
    retired_.push_back(std::move(endpoint.client));
    endpoint.client = nullptr;
  }
  std::vector<std::shared_ptr<PendingRequest>> moved;
  for (auto& [attempt, a] : endpoint.in_flight) {
    --a.request->live_attempts;
    if (!a.request->done && a.request->live_attempts == 0) moved.push_back(a.request);
  }
  endpoint.in_flight.clear();
  for (const auto& request : moved) Requeue(request);
  if (was_serving) {
    ++stats_.endpoints_down;
    stats_.last_down = absl::Now();
    Log(absl::StrCat(
        endpoint.address, " out of service (", why, ")",
        moved.empty() ? "" : absl::StrCat("; re-sending ", moved.size(), " unanswered requests")));
  }
  wake_dispatcher_ = true;
  return was_serving;
}

void TeacherPoolClient::Requeue(const std::shared_ptr<PendingRequest>& request) {
  if (request->done || request->queued) return;
  request->queued = true;
  queue_[request->id] = request;
  wake_dispatcher_ = true;
}

void TeacherPoolClient::ProberLoop() {
  absl::Time next_resolve = absl::Now() + options_.resolve_interval;
  while (true) {
    std::vector<std::shared_ptr<Endpoint>> due;
    std::vector<std::shared_ptr<RemoteTeacherClient>> retired;
    {
      absl::MutexLock lock(&mu_);
      if (shutdown_) return;
      const absl::Time now = absl::Now();
      for (auto& [address, endpoint] : endpoints_) {
        if (!endpoint->probing && endpoint->next_probe <= now) {
          endpoint->probing = true;
          due.push_back(endpoint);
        }
      }
      retired.swap(retired_);
    }
    retired.clear();  // joins their reader threads; never under the lock
    for (const auto& endpoint : due) {
      Probe(endpoint);
      absl::MutexLock lock(&mu_);
      endpoint->probing = false;
      if (shutdown_) return;
    }
    if (options_.resolver->IsDynamic() && absl::Now() >= next_resolve) {
      Resolve();
      next_resolve = absl::Now() + options_.resolve_interval;
    }
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&shutdown_), absl::Milliseconds(50));
    if (shutdown_) return;
  }
}

void TeacherPoolClient::Probe(const std::shared_ptr<Endpoint>& endpoint) {
  std::shared_ptr<RemoteTeacherClient> client;
  uint64_t generation;  // of the client this probe may create
  {
    absl::MutexLock lock(&mu_);
    client = endpoint->client;
    generation = client == nullptr ? ++endpoint->generation : endpoint->generation;
  }
  absl::Status status;
  bool refused = false;
  const bool created_here = client == nullptr;
  if (created_here) {
    RemoteTeacherClient::Options o = options_.endpoint;
    o.address = endpoint->address;
    o.resend_after_break = false;
    o.wait_for_ready = false;  // a refused connection fails now; the prober retries
    o.connect_timeout = ProbeConnectTimeout();
    o.reconnect_timeout = o.connect_timeout;
    // Only the user's expectation here: a mismatch with the pool's reference
    // is for the pool to refuse, in its own words, below.
    o.expected_weights_sha256 = options_.endpoint.expected_weights_sha256;
    // A stream that ends takes the teacher out at once, even with nothing in
    // flight (else the next health check would).
    o.on_stream_broken = [this, weak = std::weak_ptr<Endpoint>(endpoint),
                          generation](const absl::Status& why) {
      std::shared_ptr<Endpoint> e = weak.lock();
      if (e == nullptr) return;
      absl::MutexLock lock(&mu_);
      if (e->generation == generation && e->client != nullptr) {
        MarkDown(*e, State::kDown, std::string(why.message()));
      }
    };
    absl::StatusOr<std::unique_ptr<RemoteTeacherClient>> created = RemoteTeacherClient::Create(o);
    if (created.ok()) {
      client = std::move(*created);
      absl::MutexLock lock(&mu_);
      if (!have_reference_) {
        reference_ = client->info();
        have_reference_ = true;
        Log(absl::StrCat("teacher ", Short(reference_.fingerprint()), " first seen at ",
                         endpoint->address));
      } else if (!SameTeacher(client->info().fingerprint(), reference_.fingerprint())) {
        status = absl::FailedPreconditionError(absl::StrCat(
            "teacher at ", endpoint->address, " serves ", Short(client->info().fingerprint()),
            " but the pool serves ", Short(reference_.fingerprint()), "; refusing it"));
      }
    } else {
      status = created.status();
    }
    refused = absl::IsFailedPrecondition(status) || absl::IsUnauthenticated(status) ||
              absl::IsPermissionDenied(status);
  }
  if (status.ok()) status = client->CheckServing(options_.health_timeout);

  absl::MutexLock lock(&mu_);
  if (shutdown_ || endpoints_.count(endpoint->address) == 0) {
    if (client != nullptr && client != endpoint->client) retired_.push_back(std::move(client));
    return;
  }
  if (!created_here && endpoint->client != client) {
    // The client this probe checked was taken out meanwhile (its stream
    // broke): its result says nothing about the endpoint now.
    return;
  }
  const absl::Time now = absl::Now();
  if (status.ok()) {
    if (endpoint->client == nullptr) {
      endpoint->client = std::move(client);
      endpoint->limit = endpoint->client->in_flight_limit();
    }
    if (endpoint->state != State::kServing) {
      Log(absl::StrCat(endpoint->address, " serving (", endpoint->limit,
                       " requests in flight at most)"));
      endpoint->state = State::kServing;
      endpoint->last_error.clear();
      wake_dispatcher_ = true;
    }
    endpoint->backoff = absl::Milliseconds(100);
    endpoint->next_probe = now + options_.health_interval;
    return;
  }
  if (client != nullptr && client != endpoint->client) {
    client->Cancel();
    retired_.push_back(std::move(client));
  }
  const State state = refused ? State::kRefused : State::kDown;
  const std::string why(status.message());
  if (endpoint->state != state || endpoint->last_error != why) {
    if (endpoint->state != State::kServing) Log(absl::StrCat(endpoint->address, ": ", why));
  }
  MarkDown(*endpoint, state, why);
  endpoint->next_probe = now + (refused ? absl::Seconds(10) : endpoint->backoff);
  endpoint->backoff = std::min(2 * endpoint->backoff, absl::Seconds(2));
}

std::shared_ptr<TeacherPoolClient::Endpoint> TeacherPoolClient::PickEndpoint() {
  const absl::Time now = absl::Now();
  std::shared_ptr<Endpoint> best;
  for (auto& [address, endpoint] : endpoints_) {
    if (endpoint->state != State::kServing || endpoint->client == nullptr) continue;
    if (endpoint->busy_until > now) continue;
    const int64_t load = static_cast<int64_t>(endpoint->in_flight.size());
    if (load >= endpoint->limit) continue;
    // Least outstanding work; ties go to the one that has answered least, so
    // an idle pool spreads requests instead of always picking the first.
    if (best == nullptr || load < static_cast<int64_t>(best->in_flight.size()) ||
        (load == static_cast<int64_t>(best->in_flight.size()) &&
         endpoint->answered < best->answered)) {
      best = endpoint;
    }
  }
  return best;
}

TeacherPoolClient::AnswerFuture TeacherPoolClient::SubmitAnswer(
    const torch::Tensor& inputs, double temperature, const std::vector<std::string>& hidden_layers,
    const torch::Tensor& query_ids) {
  auto request = std::make_shared<PendingRequest>();
  request->inputs = inputs.contiguous();
  request->temperature = temperature;
  request->hidden_layers = hidden_layers;
  if (query_ids.defined()) request->query_ids = query_ids.contiguous();
  request->created = absl::Now();
  AnswerFuture future = request->promise.get_future().share();
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) {
      request->done = true;
      request->promise.set_value(absl::CancelledError("the teacher pool was closed"));
      return future;
    }
    request->id = ++stats_.requests;
    Requeue(request);
  }
  DispatchQueued();
  return future;
}

void TeacherPoolClient::DispatchQueued() {
  while (true) {
    std::shared_ptr<PendingRequest> request;
    std::shared_ptr<RemoteTeacherClient> client;
    std::shared_ptr<Endpoint> endpoint;
    uint64_t attempt = 0;
    {
      absl::MutexLock lock(&mu_);
      while (!queue_.empty() && queue_.begin()->second->done) queue_.erase(queue_.begin());
      if (queue_.empty() || shutdown_) return;
      endpoint = PickEndpoint();
      if (endpoint == nullptr) return;
      request = queue_.begin()->second;
      queue_.erase(queue_.begin());
      request->queued = false;
      ++request->live_attempts;
      if (++request->attempts > 1) {
        ++stats_.resent;
        stats_.last_resend = absl::Now();
      }
      attempt = next_attempt_++;
      endpoint->in_flight[attempt] = {request, absl::Now()};
      client = endpoint->client;
    }
    client->SendAsync(request->inputs, request->temperature, request->hidden_layers,
                      request->query_ids,
                      [this, endpoint, request, attempt](absl::StatusOr<teacher::Answer> answer) {
                        OnAnswer(endpoint, request, attempt, std::move(answer));
                      });
  }
}

void TeacherPoolClient::OnAnswer(const std::shared_ptr<Endpoint>& endpoint,
                                 const std::shared_ptr<PendingRequest>& request, uint64_t attempt,
                                 absl::StatusOr<teacher::Answer> answer) {
  {
    absl::MutexLock lock(&mu_);
    auto it = endpoint->in_flight.find(attempt);
    const bool live = it != endpoint->in_flight.end();
    if (live) {
      endpoint->in_flight.erase(it);
      --request->live_attempts;
      wake_dispatcher_ = true;  // room on this endpoint
    }
    if (request->done) {
      if (answer.ok()) ++stats_.late_answers;
      return;
    }
    if (answer.ok()) {
      ++endpoint->answered;
      endpoint->busy_backoff = absl::Milliseconds(50);
      ++stats_.answered;
      request->done = true;
      queue_.erase(request->id);
      request->queued = false;
    } else if (IsRequestError(answer.status().code())) {
      request->done = true;
      queue_.erase(request->id);
      request->queued = false;
    } else {
      request->last_error = std::string(answer.status().message());
      if (live && absl::IsResourceExhausted(answer.status())) {
        // Overloaded, not broken: give it a moment before more work.
        endpoint->busy_until = absl::Now() + endpoint->busy_backoff;
        endpoint->busy_backoff = std::min(2 * endpoint->busy_backoff, absl::Seconds(2));
      } else if (live) {
        MarkDown(*endpoint,
                 absl::IsFailedPrecondition(answer.status()) ? State::kRefused : State::kDown,
                 std::string(answer.status().message()));
      }
      if (request->live_attempts == 0) Requeue(request);
      return;
    }
  }
  request->promise.set_value(std::move(answer));
}

void TeacherPoolClient::DispatcherLoop() {
  absl::Time no_teacher_since = absl::InfiniteFuture();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](TeacherPoolClient* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
                                 return p->shutdown_ || p->wake_dispatcher_;
                               },
                               this),
                           absl::Milliseconds(100));
      if (shutdown_) return;
      wake_dispatcher_ = false;
    }
    DispatchQueued();

    std::vector<std::shared_ptr<PendingRequest>> expired;
    std::vector<std::pair<std::shared_ptr<PendingRequest>, std::string>> failed_repeatedly;
    std::string why;
    {
      absl::MutexLock lock(&mu_);
      const absl::Time now = absl::Now();
      // A teacher that holds a request past attempt_timeout is hung (its
      // process may still answer pings): take it out and re-send its work.
      for (auto& [address, endpoint] : endpoints_) {
        for (const auto& [attempt, a] : endpoint->in_flight) {
          if (!a.request->done && now - a.sent > options_.attempt_timeout) {
            MarkDown(
                *endpoint, State::kDown,
                absl::StrCat("no answer within ", absl::FormatDuration(options_.attempt_timeout)));
            break;
          }
        }
      }
      bool serving = false;
      for (const auto& [address, endpoint] : endpoints_) {
        serving |= endpoint->state == State::kServing;
      }
      if (serving) {
        no_teacher_since = absl::InfiniteFuture();
      } else if (no_teacher_since == absl::InfiniteFuture()) {
        no_teacher_since = now;
      }
      // A request that keeps failing, even while teachers look healthy in
      // between (they crash on it, or refuse its stream, again and again),
      // gives up after teacher_wait as well.
      for (auto it = queue_.begin(); it != queue_.end();) {
        PendingRequest& r = *it->second;
        if (r.attempts > 0 && now - r.created > options_.teacher_wait) {
          r.done = true;
          r.queued = false;
          failed_repeatedly.emplace_back(
              it->second, absl::StrCat("a teacher request failed ", r.attempts, " times over ",
                                       absl::FormatDuration(now - r.created),
                                       " (--teacher_wait); the last error: ", r.last_error,
                                       "; teachers: ", DescribeEndpoints()));
          it = queue_.erase(it);
        } else {
          ++it;
        }
      }
      if (!queue_.empty() && now - no_teacher_since > options_.teacher_wait) {
        why = absl::StrCat("no teacher in ", options_.resolver->Describe(), " answered for ",
                           absl::FormatDuration(options_.teacher_wait), " (--teacher_wait); tried ",
                           DescribeEndpoints());
        for (auto& [id, request] : queue_) {
          request->done = true;
          request->queued = false;
          expired.push_back(request);
        }
        queue_.clear();
      }
    }
    for (auto& request : expired) request->promise.set_value(absl::UnavailableError(why));
    for (auto& [request, message] : failed_repeatedly) {
      request->promise.set_value(absl::UnavailableError(message));
    }
  }
}

absl::StatusOr<v1::TeacherFingerprint> TeacherPoolClient::Fingerprint() {
  absl::MutexLock lock(&mu_);
  return reference_.fingerprint();
}

v1::GetInfoResponse TeacherPoolClient::info() const {
  absl::MutexLock lock(&mu_);
  return reference_;
}

TeacherClient::TargetsFuture TeacherPoolClient::SubmitTargets(
    const TeacherClient::Request& request) {
  return TargetsOf(
      SubmitAnswer(request.inputs, request.temperature, request.hidden_layers, request.query_ids));
}

TeacherPoolClient::Stats TeacherPoolClient::stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

std::vector<TeacherPoolClient::EndpointStatus> TeacherPoolClient::endpoints() const {
  absl::MutexLock lock(&mu_);
  std::vector<EndpointStatus> out;
  for (const auto& [address, endpoint] : endpoints_) {
    out.push_back({address, StateName(static_cast<int>(endpoint->state)),
                   static_cast<int64_t>(endpoint->in_flight.size()), endpoint->answered,
                   endpoint->last_error});
  }
  return out;
}

}  // namespace retort::client
