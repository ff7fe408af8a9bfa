// chaos_stress_client: many abusive clients of one teacher server, for the
// chaos soak (tools/chaos/soak.py).
//
//   chaos_stress_client --target=HOST:PORT --streams=64 --duration_s=120
//                       --seed=1 --report=FILE.json
//
// Each of --streams threads loops until --duration_s has passed, choosing at
// random (from --seed) one of:
//   complete   a stream with a 10 s deadline: 1-4 requests, every answer
//              read, half-close, Finish; each answer is compared with the
//              first answer this process saw for the same input (the teacher
//              must run --deterministic, so they must be byte-identical)
//   cancel     1-4 requests, then TryCancel after 0-30 ms
//   deadline   a stream whose deadline (1-20 ms) expires mid-request
//   disconnect a channel of its own (its own TCP connection): requests sent,
//              then cancelled and the channel dropped without reading
// (only those named in --modes, default all four), then sleeps 0..--pause_ms ms (default 100; so 64
// streams do not take every core).
//
// Every second and at the end it writes --report atomically: counts per mode
// and per final gRPC status, answers compared and mismatched, and a digest of
// each input's answer (so several processes, and a later probe, can be
// compared). Exits 0 when no answer mismatched, 2 on a mismatch, 1 when the
// target never answered GetInfo.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "retort/v1/teacher.grpc.pb.h"

namespace {

namespace v1 = retort::v1;
using Clock = std::chrono::steady_clock;

struct Flags {
  std::string target;
  int streams = 64;
  double duration_s = 60;
  uint64_t seed = 1;
  std::string report;
  int seq_len = 16;
  int top_k = 8;
  int pause_ms = 100;
  std::string modes = "complete,cancel,deadline,disconnect";
};

bool ParseFlags(int argc, char** argv, Flags* f) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name, std::string* out) {
      const std::string prefix = std::string("--") + name + "=";
      if (a.rfind(prefix, 0) != 0) return false;
      *out = a.substr(prefix.size());
      return true;
    };
    std::string v;
    if (value("target", &v)) {
      f->target = v;
    } else if (value("streams", &v)) {
      f->streams = std::atoi(v.c_str());
    } else if (value("duration_s", &v)) {
      f->duration_s = std::atof(v.c_str());
    } else if (value("seed", &v)) {
      f->seed = std::strtoull(v.c_str(), nullptr, 10);
    } else if (value("report", &v)) {
      f->report = v;
    } else if (value("seq_len", &v)) {
      f->seq_len = std::atoi(v.c_str());
    } else if (value("top_k", &v)) {
      f->top_k = std::atoi(v.c_str());
    } else if (value("modes", &v)) {
      f->modes = v;
    } else if (value("pause_ms", &v)) {
      f->pause_ms = std::max(1, std::atoi(v.c_str()));
    } else {
      std::fprintf(stderr, "chaos_stress_client: unknown flag %s\n", a.c_str());
      return false;
    }
  }
  return !f->target.empty() && !f->report.empty() && f->streams > 0;
}

uint64_t Fnv1a(const std::string& bytes) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// Shared counters and the first answer digest per input; thread-safe.
class Tally {
 public:
  void Count(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    ++counts_[key];
  }
  // Records the answer to input `input`; false if it differs from the first.
  bool Compare(int input, uint64_t digest) {
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, inserted] = digests_.emplace(input, digest);
    ++counts_["answers_compared"];
    if (!inserted && it->second != digest) {
      ++counts_["answers_mismatched"];
      return false;
    }
    return true;
  }
  int64_t Get(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    return counts_[key];
  }
  std::string Json(bool finished) {
    std::lock_guard<std::mutex> lock(mu_);
    std::string s = "{\"finished\": ";
    s += finished ? "true" : "false";
    s += ", \"counts\": {";
    bool first = true;
    for (const auto& [k, v] : counts_) {
      s += (first ? "\"" : ", \"") + k + "\": " + std::to_string(v);
      first = false;
    }
    s += "}, \"digests\": {";
    first = true;
    for (const auto& [k, v] : digests_) {
      char hex[32];
      std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(v));
      s += (first ? "\"" : ", \"") + std::to_string(k) + "\": \"" + hex + "\"";
      first = false;
    }
    return s + "}}\n";
  }

 private:
  std::mutex mu_;
  std::map<std::string, int64_t> counts_;
  std::map<int, uint64_t> digests_;
};

void WriteReport(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (f == nullptr) return;
  std::fwrite(text.data(), 1, text.size(), f);
  std::fclose(f);
  std::rename(tmp.c_str(), path.c_str());
}

std::string StatusName(grpc::StatusCode code) {
  static const char* kNames[] = {"OK",
                                 "CANCELLED",
                                 "UNKNOWN",
                                 "INVALID_ARGUMENT",
                                 "DEADLINE_EXCEEDED",
                                 "NOT_FOUND",
                                 "ALREADY_EXISTS",
                                 "PERMISSION_DENIED",
                                 "RESOURCE_EXHAUSTED",
                                 "FAILED_PRECONDITION",
                                 "ABORTED",
                                 "OUT_OF_RANGE",
                                 "UNIMPLEMENTED",
                                 "INTERNAL",
                                 "UNAVAILABLE",
                                 "DATA_LOSS",
                                 "UNAUTHENTICATED"};
  const int c = static_cast<int>(code);
  return c >= 0 && c <= 16 ? kNames[c] : "CODE_" + std::to_string(c);
}

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target, bool own_connection) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);
  // A channel with its own subchannel pool has its own TCP connection, which
  // dies with it (a client that disconnects).
  if (own_connection) args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

// One fixed input per index: token ids from a seeded generator.
v1::DistillRequest MakeRequest(int input, uint64_t sequence, int64_t vocab, const Flags& f) {
  std::mt19937 rng(static_cast<uint32_t>(input) * 7919u + 17u);
  v1::DistillRequest r;
  r.set_sequence(sequence);
  r.set_temperature(1.0);
  r.set_output(v1::OUTPUT_TOP_K);
  r.set_top_k(f.top_k);
  r.set_value_dtype(v1::DTYPE_FLOAT32);
  v1::Tensor* t = r.mutable_inputs();
  t->set_dtype(v1::DTYPE_INT32);
  t->add_shape(1);
  t->add_shape(f.seq_len);
  std::string data(static_cast<size_t>(f.seq_len) * 4, '\0');
  for (int i = 0; i < f.seq_len; ++i) {
    const int32_t id = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    std::memcpy(&data[static_cast<size_t>(i) * 4], &id, 4);
  }
  t->set_data(data);
  return r;
}

class Worker {
 public:
  Worker(const Flags& f, int64_t vocab, std::shared_ptr<grpc::Channel> shared, Tally* tally,
         uint64_t seed)
      : f_(f), vocab_(vocab), shared_(std::move(shared)), tally_(tally), rng_(seed) {}

  void Run(Clock::time_point end) {
    auto on = [&](const char* m) { return f_.modes.find(m) != std::string::npos; };
    while (Clock::now() < end) {
      const int mode = static_cast<int>(rng_() % 10);
      if (mode < 4 && on("complete")) {
        Complete();
      } else if (mode >= 4 && mode < 6 && on("cancel")) {
        Cancel();
      } else if (mode >= 6 && mode < 8 && on("deadline")) {
        Deadline();
      } else if (mode >= 8 && on("disconnect")) {
        Disconnect();
      } else {
        continue;
      }
      std::this_thread::sleep_for(
          std::chrono::milliseconds(rng_() % static_cast<uint64_t>(f_.pause_ms)));
    }
  }

 private:
  using Stream = grpc::ClientReaderWriter<v1::DistillRequest, v1::DistillResponse>;

  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }

  // Sends 1-4 requests; returns the inputs sent, by sequence number.
  std::map<uint64_t, int> Send(Stream* stream) {
    std::map<uint64_t, int> sent;
    const int n = 1 + Pick(4);
    for (int i = 0; i < n; ++i) {
      const int input = Pick(8);
      const uint64_t seq = ++sequence_;
      if (!stream->Write(MakeRequest(input, seq, vocab_, f_))) break;
      sent[seq] = input;
      tally_->Count("requests_sent");
    }
    return sent;
  }

  void Finish(Stream* stream, const char* mode) {
    const grpc::Status status = stream->Finish();
    tally_->Count(std::string(mode) + "." + StatusName(status.error_code()));
  }

  void Complete() {
    tally_->Count("mode.complete");
    auto stub = v1::Teacher::NewStub(shared_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<Stream> stream = stub->Distill(&context);
    std::map<uint64_t, int> sent = Send(stream.get());
    stream->WritesDone();
    v1::DistillResponse response;
    std::map<uint64_t, std::string> answers;
    while (stream->Read(&response)) {
      if (response.error_code() != 0) {
        tally_->Count("answers_error_code_" + std::to_string(response.error_code()));
        continue;
      }
      std::string bytes;
      response.log_probs().SerializeToString(&bytes);
      answers[response.sequence()] += bytes;
    }
    for (const auto& [seq, bytes] : answers) {
      if (sent.count(seq) == 0) continue;
      tally_->Count("answers_ok");
      if (!tally_->Compare(sent[seq], Fnv1a(bytes))) {
        std::fprintf(stderr, "chaos_stress_client: answer to input %d differs\n", sent[seq]);
      }
    }
    Finish(stream.get(), "complete");
  }

  void Cancel() {
    tally_->Count("mode.cancel");
    auto stub = v1::Teacher::NewStub(shared_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<Stream> stream = stub->Distill(&context);
    Send(stream.get());
    std::this_thread::sleep_for(std::chrono::milliseconds(Pick(30)));
    context.TryCancel();
    v1::DistillResponse ignored;
    while (stream->Read(&ignored)) {
    }
    Finish(stream.get(), "cancel");
  }

  void Deadline() {
    tally_->Count("mode.deadline");
    auto stub = v1::Teacher::NewStub(shared_);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::milliseconds(1 + Pick(20)));
    std::unique_ptr<Stream> stream = stub->Distill(&context);
    Send(stream.get());
    v1::DistillResponse ignored;
    while (stream->Read(&ignored)) {
    }
    Finish(stream.get(), "deadline");
  }

  void Disconnect() {
    tally_->Count("mode.disconnect");
    std::shared_ptr<grpc::Channel> own = NewChannel(f_.target, /*own_connection=*/true);
    auto stub = v1::Teacher::NewStub(own);
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    std::unique_ptr<Stream> stream = stub->Distill(&context);
    Send(stream.get());
    context.TryCancel();
    v1::DistillResponse ignored;
    while (stream->Read(&ignored)) {
    }
    Finish(stream.get(), "disconnect");
    // `own` goes out of scope here: its connection closes.
  }

  const Flags& f_;
  const int64_t vocab_;
  std::shared_ptr<grpc::Channel> shared_;
  Tally* tally_;
  std::mt19937_64 rng_;
  uint64_t sequence_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  if (!ParseFlags(argc, argv, &f)) {
    std::fprintf(stderr,
                 "usage: chaos_stress_client --target=HOST:PORT --report=FILE [--streams=64] "
                 "[--duration_s=60] [--seed=1] [--seq_len=16] [--top_k=8] [--pause_ms=100] "
                 "[--modes=complete,cancel,deadline,disconnect]\n");
    return 64;
  }
  std::shared_ptr<grpc::Channel> shared = NewChannel(f.target, /*own_connection=*/false);
  v1::GetInfoResponse info;
  {
    auto stub = v1::Teacher::NewStub(shared);
    grpc::ClientContext context;
    context.set_wait_for_ready(true);
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    const grpc::Status status = stub->GetInfo(&context, v1::GetInfoRequest(), &info);
    if (!status.ok()) {
      std::fprintf(stderr, "chaos_stress_client: GetInfo on %s: %s\n", f.target.c_str(),
                   status.error_message().c_str());
      return 1;
    }
  }
  const int64_t vocab = info.fingerprint().num_classes();
  Tally tally;
  const Clock::time_point end =
      Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(f.duration_s * 1000));
  std::atomic<bool> done{false};
  std::thread reporter([&] {
    while (!done.load()) {
      WriteReport(f.report, tally.Json(false));
      for (int i = 0; i < 10 && !done.load(); ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    }
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < f.streams; ++i) {
    threads.emplace_back([&, i] {
      Worker worker(f, vocab, shared, &tally, f.seed * 1000003ull + static_cast<uint64_t>(i));
      worker.Run(end);
    });
  }
  for (std::thread& t : threads) t.join();
  done = true;
  reporter.join();
  WriteReport(f.report, tally.Json(true));
  return tally.Get("answers_mismatched") == 0 ? 0 : 2;
}
