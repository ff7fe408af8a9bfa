// The teacher-logit cache: bit packing; each encoding's round trip within
// its stated error; sampled targets' unbiasedness (the mean estimate and the
// mean loss gradient converge to the dense ones); the student loss from each
// encoding against the dense loss; dumping, resuming a dump killed between
// and inside shards, reading with different batchings ("ranks"), and the
// refusals: a cache of something else, an unfinished dump, a sequence it
// lacks, hostile shards and manifests.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

#include "cache/bit_stream.h"
#include "cache/cache_manifest.h"
#include "cache/cache_shard.h"
#include "cache/cached_teacher_client.h"
#include "cache/target_encoding.h"
#include "cache/teacher_dump.h"
#include "common/file_util.h"
#include "data/dataset.h"
#include "teacher/sampled_targets.h"
#include "teacher/top_k.h"
#include "tests/client/fake_teacher_client.h"
#include "trainer/lm/lm_distillation_loss.h"

namespace retort::cache {
namespace {

using ::testing::HasSubstr;

constexpr int64_t kVocab = 300;
constexpr int64_t kSeqLen = 12;

std::string TempDir(const std::string& name) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("cache_test_" + name + "_" + std::to_string(getpid())))
                              .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// Peaked, position-dependent log-probabilities like a language model's.
torch::Tensor LogProbs(int64_t positions, int64_t vocab, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::log_softmax(torch::randn({positions, vocab}) * 3.0, 1);
}

TEST(BitStreamTest, FieldsOfAnyWidthRoundTrip) {
  std::mt19937_64 rng(7);
  std::vector<std::pair<uint64_t, int>> fields;
  std::string bytes;
  BitWriter w(&bytes);
  for (int i = 0; i < 2000; ++i) {
    const int bits = 1 + static_cast<int>(rng() % 57);
    const uint64_t v = rng() & ((uint64_t{1} << bits) - 1);
    fields.push_back({v, bits});
    w.Write(v, bits);
  }
  w.Finish();
  BitReader r(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  for (const auto& [v, bits] : fields) ASSERT_EQ(r.Read(bits), v);
  EXPECT_FALSE(r.overrun());
  EXPECT_EQ(r.Read(16), 0u);  // past the end: zeros, flagged
  EXPECT_TRUE(r.overrun());
  EXPECT_EQ(BitsFor(4096), 12);
  EXPECT_EQ(BitsFor(4097), 13);
  EXPECT_EQ(BitsFor(2), 1);
}

TEST(EncodingOptionsTest, BadOptionsNameTheFlag) {
  EncodingOptions o;
  o.top_k = 0;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("--cache_top_k"));
  o = {};
  o.exact = 0;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("--cache_exact"));
  o = {};
  o.value_bits = 17;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("--cache_value_bits"));
  o = {};
  o.kind = EncodingOptions::Kind::kSampled;
  o.samples = 0;
  EXPECT_THAT(std::string(o.Validate().message()), HasSubstr("--cache_samples"));
  EXPECT_FALSE(EncodingOptions::ParseKind("dense").ok());
  absl::StatusOr<EncodingOptions> back = EncodingOptions::FromJson(EncodingOptions().ToJson());
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == EncodingOptions());
}

absl::StatusOr<teacher::TopKLogProbs> RoundTrip(const teacher::TopKLogProbs& in,
                                                const EncodingOptions& o) {
  std::string record;
  if (absl::Status s = EncodeTopKRecord(in, o, kVocab, &record); !s.ok()) return s;
  EXPECT_EQ(static_cast<int64_t>(record.size()),
            (TopKBitsPerPosition(o, kVocab) * in.indices.size(0) + 7) / 8);
  return DecodeRecords({{reinterpret_cast<const uint8_t*>(record.data()), record.size()}},
                       in.indices.size(0), o, kVocab, [](size_t) { return std::string("r"); });
}

TEST(TargetEncodingTest, TopKRoundTripsWithinItsStatedError) {
  const torch::Tensor lp = LogProbs(kSeqLen, kVocab, 1);
  for (int value_bits : {4, 8, 12}) {
    EncodingOptions o;
    o.top_k = 32;
    o.exact = 4;
    o.value_bits = value_bits;
    const teacher::TopKLogProbs top = teacher::TopK(lp, o.top_k);
    absl::StatusOr<teacher::TopKLogProbs> back = RoundTrip(top, o);
    ASSERT_TRUE(back.ok()) << back.status();
    EXPECT_TRUE(torch::equal(back->indices, top.indices));
    // Every row is a distribution again.
    const torch::Tensor mass = back->values.exp().sum(1) + back->tail_log_mass.exp();
    EXPECT_LT((mass - 1).abs().max().item<float>(), 1e-5);
    for (int64_t p = 0; p < kSeqLen; ++p) {
      const float anchor = top.values[p][o.exact - 1].item<float>();
      const float scale = (anchor - top.values[p][o.top_k - 1].item<float>()) /
                          static_cast<float>((1 << value_bits) - 1);
      // Renormalisation shifts every value by the same amount; compare
      // differences to the top value to take it out.
      const torch::Tensor want = top.values[p] - top.values[p][0];
      const torch::Tensor got = back->values[p] - back->values[p][0];
      const torch::Tensor err = (want - got).abs();
      EXPECT_LT(err.narrow(0, 0, o.exact).max().item<float>(), 2e-2) << "exact entries, row " << p;
      EXPECT_LE(err.narrow(0, o.exact, o.top_k - o.exact).max().item<float>(),
                scale * 0.5f * 1.01f + 2e-2f)
          << value_bits << "-bit codes, row " << p;
      EXPECT_NEAR(back->tail_log_mass[p].item<float>() - back->values[p][0].item<float>(),
                  top.tail_log_mass[p].item<float>() - top.values[p][0].item<float>(), 2e-2);
    }
  }
}

TEST(TargetEncodingTest, TopKRefusesAnswersWithFewerEntriesOrForeignIds) {
  const teacher::TopKLogProbs top = teacher::TopK(LogProbs(4, kVocab, 2), 8);
  EncodingOptions o;
  o.top_k = 16;
  std::string record;
  EXPECT_THAT(std::string(EncodeTopKRecord(top, o, kVocab, &record).message()),
              HasSubstr("needs 16"));
  o.top_k = 8;
  EXPECT_THAT(std::string(EncodeTopKRecord(top, o, /*vocab=*/4, &record).message()),
              HasSubstr("outside the vocabulary"));
}

TEST(SampledTargetsTest, DrawsAreReproduciblePerRowAndCountsSumToN) {
  const torch::Tensor lp = LogProbs(2 * kSeqLen, kVocab, 3);
  const teacher::SampledTargets a = teacher::SampleTargets(lp, 32, {11, 12});
  const teacher::SampledTargets b = teacher::SampleTargets(lp, 32, {11, 12});
  EXPECT_TRUE(torch::equal(a.ids, b.ids));
  EXPECT_TRUE(torch::equal(a.counts, b.counts));
  EXPECT_TRUE(torch::equal(a.counts.sum(1), torch::full({2 * kSeqLen}, 32, torch::kInt64)));
  // A row's draws depend on its key only, not on the batch it came in.
  const teacher::SampledTargets alone =
      teacher::SampleTargets(lp.narrow(0, kSeqLen, kSeqLen), 32, {12});
  const teacher::TopKLogProbs x = alone.ToTopK(), y = a.ToTopK();
  const torch::Tensor dense_alone = x.ToDense(kVocab);
  const torch::Tensor dense_batch = y.ToDense(kVocab).narrow(0, kSeqLen, kSeqLen);
  EXPECT_TRUE(torch::allclose(dense_alone, dense_batch));
  const teacher::SampledTargets other = teacher::SampleTargets(lp, 32, {13, 14});
  EXPECT_FALSE(torch::equal(other.counts, a.counts) && torch::equal(other.ids, a.ids));
}

TEST(SampledTargetsTest, TheEstimateIsUnbiased) {
  const torch::Tensor lp = LogProbs(4, 60, 4);
  const int draws = 3000;
  torch::Tensor mean = torch::zeros({4, 60}, torch::kFloat64);
  for (int i = 0; i < draws; ++i) {
    const teacher::SampledTargets s =
        teacher::SampleTargets(lp, 16, {static_cast<uint64_t>(1000 + i)});
    mean.scatter_add_(1, s.ids, s.counts.to(torch::kFloat64) / 16.0);
  }
  mean /= draws;
  // Per entry the estimate's standard error is sqrt(p (1 - p) / (16 * 3000))
  // <= 0.0023; 0.012 is five of them.
  EXPECT_LT((mean - lp.exp().to(torch::kFloat64)).abs().max().item<double>(), 0.012);
}

TEST(SampledTargetsTest, RecordsRoundTripExactly) {
  const torch::Tensor lp = LogProbs(kSeqLen, kVocab, 5);
  EncodingOptions o;
  o.kind = EncodingOptions::Kind::kSampled;
  o.samples = 24;
  const teacher::SampledTargets s = teacher::SampleTargets(lp, o.samples, {99});
  std::string record;
  ASSERT_TRUE(EncodeSampledRecord(s, o, kVocab, &record).ok());
  absl::StatusOr<teacher::TopKLogProbs> back =
      DecodeRecords({{reinterpret_cast<const uint8_t*>(record.data()), record.size()}}, kSeqLen, o,
                    kVocab, [](size_t) { return std::string("r"); });
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_TRUE(torch::allclose(back->ToDense(kVocab), s.ToTopK().ToDense(kVocab), 1e-6, 1e-7));
  EXPECT_TRUE(torch::isinf(back->tail_log_mass).all().item<bool>());
}

// alpha = 1: the soft term only, forward KL at T = 1.
torch::Tensor SoftLossGradient(const torch::Tensor& logits, const teacher::TopKLogProbs& targets) {
  torch::Tensor z = logits.clone().requires_grad_(true);
  trainer::LmLossOptions o;
  o.alpha = 1.0;
  const torch::Tensor labels = torch::zeros({logits.size(0)}, torch::kInt64);
  trainer::LmDistillationLoss(z, &targets, labels, o).total.backward();
  return z.grad();
}

TEST(CacheLossTest, EachEncodingsLossAndGradientAgainstTheDenseOnes) {
  torch::manual_seed(8);
  const int64_t positions = 16, vocab = 80;
  const torch::Tensor lp = torch::log_softmax(torch::randn({positions, vocab}) * 3.0, 1);
  const torch::Tensor logits = torch::randn({positions, vocab});
  const torch::Tensor dense_grad = SoftLossGradient(logits, teacher::DenseAsTopK(lp));
  // Top-k at 8 bits: the gradient of the cached top-k is that of the live
  // top-k within the quantization error.
  EncodingOptions o;
  o.top_k = 32;
  const teacher::TopKLogProbs live = teacher::TopK(lp, o.top_k);
  std::string record;
  ASSERT_TRUE(EncodeTopKRecord(live, o, vocab, &record).ok());
  absl::StatusOr<teacher::TopKLogProbs> cached =
      DecodeRecords({{reinterpret_cast<const uint8_t*>(record.data()), record.size()}}, positions,
                    o, vocab, [](size_t) { return std::string("r"); });
  ASSERT_TRUE(cached.ok());
  const torch::Tensor live_grad = SoftLossGradient(logits, live);
  EXPECT_LT((SoftLossGradient(logits, *cached) - live_grad).abs().max().item<float>(), 2e-4);
  // Sampled: the mean gradient over independent draws converges to the
  // dense gradient (unbiased), where top-k's stays off by its cut.
  torch::Tensor mean = torch::zeros_like(dense_grad);
  const int draws = 2000, samples = 32;
  for (int i = 0; i < draws; ++i) {
    const teacher::SampledTargets s =
        teacher::SampleTargets(lp, samples, {static_cast<uint64_t>(i)});
    mean += SoftLossGradient(logits, s.ToTopK());
  }
  mean /= draws;
  // The gradient is (q - p) / positions; p's estimate has a standard error
  // of at most sqrt(1/4 / (samples * draws)) per entry: allow 5 of them.
  const double bound = 5 * std::sqrt(0.25 / (samples * draws)) / positions;
  const float sampled_err = (mean - dense_grad).abs().max().item<float>();
  EXPECT_LT(sampled_err, bound);
  const float top4_err =
      (SoftLossGradient(logits, teacher::TopK(lp, 4)) - dense_grad).abs().max().item<float>();
  EXPECT_GT(top4_err, 2 * sampled_err) << "top-4's bias should exceed the sampled mean's error";
}

// --- Dumping and reading ------------------------------------------------------------

class CacheDumpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    torch::manual_seed(21);
    train_ = std::make_shared<data::TensorDataset>(
        torch::randint(kVocab, {50, kSeqLen}, torch::kInt64),
        torch::randint(kVocab, {50, kSeqLen}, torch::kInt64), kVocab);
    valid_ = std::make_shared<data::TensorDataset>(
        torch::randint(kVocab, {9, kSeqLen}, torch::kInt64),
        torch::randint(kVocab, {9, kSeqLen}, torch::kInt64), kVocab);
    teacher_ = std::make_shared<client::FakeTeacherClient>([](const torch::Tensor& tokens) {
      // Each position's logits depend on its token and position.
      const torch::Tensor t = tokens.reshape({-1, 1}).to(torch::kFloat32);
      const torch::Tensor v = torch::arange(kVocab, torch::kFloat32).reshape({1, -1});
      return torch::sin(t * 0.37 + v * 0.11) * 4.0 + torch::cos(v * t * 0.013) * 2.0;
    });
    teacher_->SetNumClasses(kVocab);
  }

  DumpOptions Options(const std::string& dir, EncodingOptions::Kind kind) {
    DumpOptions o;
    o.out_dir = dir;
    o.splits = {{"train", train_}, {"validation", valid_}};
    o.temperature = 2.0;
    o.encoding.kind = kind;
    o.encoding.top_k = 16;
    o.encoding.samples = 20;
    o.sequences_per_shard = 16;  // 59 sequences: 4 shards, the last of 11
    o.batch_size = 5;
    o.prefetch = 3;
    o.corpus_sha256 = "corpus";
    o.tokenizer_sha256 = "tok";
    o.progress = false;
    return o;
  }

  std::unique_ptr<CachedTeacherClient> OpenCache(const std::string& dir) {
    CachedTeacherClient::Options o;
    o.dir = dir;
    o.expected.corpus_sha256 = "corpus";
    o.expected.seq_len = kSeqLen;
    o.expected.temperature = 2.0;
    absl::StatusOr<std::unique_ptr<CachedTeacherClient>> c = CachedTeacherClient::Open(o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // Every sequence's targets, asked in batches of `batch` from `begin`
  // with stride `stride` (one "rank" of `stride`), keyed by global index.
  std::map<int64_t, torch::Tensor> Read(CachedTeacherClient& c, int64_t begin, int64_t stride,
                                        int64_t batch) {
    std::vector<int64_t> mine;
    for (int64_t i = begin; i < 59; i += stride) mine.push_back(i);
    std::map<int64_t, torch::Tensor> out;
    for (size_t at = 0; at < mine.size(); at += batch) {
      std::vector<torch::Tensor> rows;
      std::vector<int64_t> ids(mine.begin() + at, mine.begin() + std::min(mine.size(), at + batch));
      for (int64_t g : ids) {
        rows.push_back(g < 50 ? train_->inputs()[g] : valid_->inputs()[g - 50]);
      }
      const absl::StatusOr<client::TeacherClient::Targets> t =
          c.SubmitTargets({torch::stack(rows), 2.0, {}, {}}).get();
      EXPECT_TRUE(t.ok()) << t.status();
      if (!t.ok()) return out;
      const torch::Tensor dense = t->Dense(kVocab);
      for (size_t r = 0; r < ids.size(); ++r) {
        out[ids[r]] = dense.narrow(0, static_cast<int64_t>(r) * kSeqLen, kSeqLen).clone();
      }
    }
    return out;
  }

  std::shared_ptr<data::TensorDataset> train_, valid_;
  std::shared_ptr<client::FakeTeacherClient> teacher_;
};

TEST_F(CacheDumpTest, TopKCacheAnswersWhatTheTeacherSaidWhateverTheBatching) {
  const std::string dir = TempDir("topk");
  absl::StatusOr<DumpResult> r =
      DumpTeacherCache(Options(dir, EncodingOptions::Kind::kTopK), *teacher_);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequences, 59);
  EXPECT_EQ(r->shards_written, 4);
  std::unique_ptr<CachedTeacherClient> cache = OpenCache(dir);
  ASSERT_NE(cache, nullptr);
  absl::StatusOr<v1::TeacherFingerprint> fp = cache->Fingerprint();
  ASSERT_TRUE(fp.ok());
  EXPECT_EQ(fp->weights_sha256(), "fake");
  EXPECT_EQ(fp->num_classes(), kVocab);
  // 1, 2 and 3 reading ranks with different batch sizes get identical
  // targets per sequence.
  std::map<int64_t, torch::Tensor> one = Read(*cache, 0, 1, 7);
  ASSERT_EQ(one.size(), 59u);
  for (int64_t ranks : {2, 3}) {
    for (int64_t rank = 0; rank < ranks; ++rank) {
      for (const auto& [g, t] : Read(*cache, rank, ranks, 2 + rank)) {
        EXPECT_TRUE(torch::equal(t, one.at(g))) << "sequence " << g << ", " << ranks << " ranks";
      }
    }
  }
  // And they are the teacher's top-16 within the 8-bit quantization.
  const torch::Tensor inputs = train_->inputs().narrow(0, 3, 1);
  const absl::StatusOr<client::TeacherClient::Targets> live =
      teacher_->SubmitTargets({inputs, 2.0, {}, {}}).get();
  ASSERT_TRUE(live.ok());
  const teacher::TopKLogProbs want = teacher::TopK(live->log_probs, 16);
  const absl::StatusOr<client::TeacherClient::Targets> got =
      cache->SubmitTargets({inputs, 2.0, {}, {}}).get();
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE(torch::equal(got->top_k.indices, want.indices));
  EXPECT_LT((got->top_k.values.exp() - want.values.exp()).abs().max().item<float>(), 5e-3);
}

TEST_F(CacheDumpTest, SampledCacheRoundTripsTheDraws) {
  const std::string dir = TempDir("sampled");
  ASSERT_TRUE(DumpTeacherCache(Options(dir, EncodingOptions::Kind::kSampled), *teacher_).ok());
  std::unique_ptr<CachedTeacherClient> cache = OpenCache(dir);
  ASSERT_NE(cache, nullptr);
  const torch::Tensor inputs = valid_->inputs().narrow(0, 2, 3);
  const absl::StatusOr<client::TeacherClient::Targets> live =
      teacher_->SubmitTargets({inputs, 2.0, {}, {}}).get();
  ASSERT_TRUE(live.ok());
  const teacher::SampledTargets want =
      teacher::SampleTargets(live->log_probs, 20, teacher::RowKeys(inputs));
  const absl::StatusOr<client::TeacherClient::Targets> got =
      cache->SubmitTargets({inputs, 2.0, {}, {}}).get();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(torch::allclose(got->Dense(kVocab), want.ToTopK().ToDense(kVocab)));
}

TEST_F(CacheDumpTest, AKilledDumpResumesAtTheFirstIncompleteShard) {
  const std::string whole = TempDir("whole"), killed = TempDir("killed");
  ASSERT_TRUE(DumpTeacherCache(Options(whole, EncodingOptions::Kind::kTopK), *teacher_).ok());
  DumpOptions o = Options(killed, EncodingOptions::Kind::kTopK);
  o.after_shard_written = [](int64_t shard) {
    return shard == 1 ? absl::AbortedError("killed") : absl::OkStatus();
  };
  EXPECT_EQ(DumpTeacherCache(o, *teacher_).status().code(), absl::StatusCode::kAborted);
  // As if killed inside shard 2: a half-written temporary and a stray shard
  // file that no manifest lists.
  ASSERT_TRUE(WriteFileAtomically(killed + "/shard-00002.rtc", "half a shard").ok());
  { std::ofstream(killed + "/shard-00002.rtc.tmp") << "partial"; }
  // The unfinished cache is not readable.
  CachedTeacherClient::Options co;
  co.dir = killed;
  EXPECT_THAT(std::string(CachedTeacherClient::Open(co).status().message()),
              HasSubstr("unfinished"));
  o.after_shard_written = nullptr;
  absl::StatusOr<DumpResult> resumed = DumpTeacherCache(o, *teacher_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->shards_reused, 2);
  EXPECT_EQ(resumed->shards_written, 2);
  for (int s = 0; s < 4; ++s) {
    const std::string name = CacheManifest::ShardFileName(s);
    EXPECT_EQ(*ReadFile(whole + "/" + name), *ReadFile(killed + "/" + name)) << name;
  }
  // A shard damaged after the fact is rewritten; the whole ones after it
  // are kept.
  ASSERT_TRUE(WriteFileAtomically(killed + "/shard-00001.rtc", "damaged").ok());
  resumed = DumpTeacherCache(o, *teacher_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->shards_reused, 3);
  EXPECT_EQ(resumed->shards_written, 1);
  EXPECT_EQ(*ReadFile(whole + "/shard-00001.rtc"), *ReadFile(killed + "/shard-00001.rtc"));
  EXPECT_EQ(*ReadFile(whole + "/manifest.json"), *ReadFile(killed + "/manifest.json"));
  // --overwrite starts over: no shard of the old dump is taken.
  o.overwrite = true;
  resumed = DumpTeacherCache(o, *teacher_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->shards_reused, 0);
  EXPECT_EQ(resumed->shards_written, 4);
}

// A barrier of `n` threads that fails (as a communicator's timeout would)
// once a participant has failed.
class ThreadBarrier {
 public:
  explicit ThreadBarrier(int n) : n_(n) {}
  absl::Status Wait() {
    absl::MutexLock lock(&mu_);
    const int64_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.SignalAll();
      return absl::OkStatus();
    }
    while (generation_ == generation && !failed_) cv_.Wait(&mu_);
    return generation_ == generation ? absl::AbortedError("a rank failed") : absl::OkStatus();
  }
  void Fail() {
    absl::MutexLock lock(&mu_);
    failed_ = true;
    cv_.SignalAll();
  }

 private:
  const int n_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  bool failed_ ABSL_GUARDED_BY(mu_) = false;
};

// Runs `ranks` dump ranks as threads, each with its own teacher; rank r's
// options from `options(r)`. Returns each rank's status or result.
std::vector<absl::StatusOr<DumpResult>> DumpOnRanks(
    int ranks, const std::function<DumpOptions(int)>& options,
    const std::function<std::shared_ptr<client::TeacherClient>()>& teacher) {
  ThreadBarrier barrier(ranks);
  std::vector<absl::StatusOr<DumpResult>> results(static_cast<size_t>(ranks),
                                                  absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r) {
    threads.emplace_back([&, r] {
      DumpOptions o = options(r);
      o.rank = r;
      o.world_size = ranks;
      o.barrier = [&] { return barrier.Wait(); };
      std::shared_ptr<client::TeacherClient> t = teacher();
      results[static_cast<size_t>(r)] = DumpTeacherCache(o, *t);
      if (!results[static_cast<size_t>(r)].ok()) barrier.Fail();
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

TEST_F(CacheDumpTest, RanksWriteTheCacheOneRankWouldAndResumeWhatADeadRankLeft) {
  const std::string one = TempDir("one_rank");
  DumpOptions o = Options(one, EncodingOptions::Kind::kTopK);
  ASSERT_TRUE(DumpTeacherCache(o, *teacher_).ok());
  const auto fresh_teacher = [] {
    auto t = std::make_shared<client::FakeTeacherClient>([](const torch::Tensor& tokens) {
      const torch::Tensor t = tokens.reshape({-1, 1}).to(torch::kFloat32);
      const torch::Tensor v = torch::arange(kVocab, torch::kFloat32).reshape({1, -1});
      return torch::sin(t * 0.37 + v * 0.11) * 4.0 + torch::cos(v * t * 0.013) * 2.0;
    });
    t->SetNumClasses(kVocab);
    return t;
  };
  const auto same_files = [&](const std::string& dir) {
    for (int s = 0; s < 4; ++s) {
      const std::string name = CacheManifest::ShardFileName(s);
      EXPECT_EQ(*ReadFile(one + "/" + name), *ReadFile(dir + "/" + name)) << dir << " " << name;
    }
    EXPECT_EQ(*ReadFile(one + "/manifest.json"), *ReadFile(dir + "/manifest.json")) << dir;
  };
  for (int ranks : {2, 3}) {
    const std::string dir = TempDir(absl::StrCat("ranks", ranks));
    std::vector<absl::StatusOr<DumpResult>> r = DumpOnRanks(
        ranks, [&](int) { return Options(dir, EncodingOptions::Kind::kTopK); }, fresh_teacher);
    for (int k = 0; k < ranks; ++k) ASSERT_TRUE(r[k].ok()) << "rank " << k << ": " << r[k].status();
    // Rank 0 reports the whole dump; rank 1 its own shards (1 and, of 2, 3).
    EXPECT_EQ(r[0]->shards_written, 4);
    EXPECT_EQ(r[1]->shards_written, ranks == 2 ? 2 : 1);
    same_files(dir);
    EXPECT_NE(OpenCache(dir), nullptr);
  }
  // Two ranks; rank 1 dies after its first shard (1), so rank 0 fails at
  // the barrier. One rank resumes: it keeps shards 0, 1 and 2 (rank 0 went
  // on) and computes 3 alone.
  const std::string dead = TempDir("dead_rank");
  std::vector<absl::StatusOr<DumpResult>> r = DumpOnRanks(
      2,
      [&](int rank) {
        DumpOptions d = Options(dead, EncodingOptions::Kind::kTopK);
        if (rank == 1) {
          d.after_shard_written = [](int64_t) { return absl::AbortedError("killed"); };
        }
        return d;
      },
      fresh_teacher);
  EXPECT_FALSE(r[0].ok());
  EXPECT_EQ(r[1].status().code(), absl::StatusCode::kAborted);
  absl::StatusOr<DumpResult> resumed =
      DumpTeacherCache(Options(dead, EncodingOptions::Kind::kTopK), *teacher_);
  ASSERT_TRUE(resumed.ok()) << resumed.status();
  EXPECT_EQ(resumed->shards_reused, 3);
  EXPECT_EQ(resumed->shards_written, 1);
  same_files(dead);
}

TEST_F(CacheDumpTest, ACacheOfSomethingElseIsRefusedWithTheDifferenceNamed) {
  const std::string dir = TempDir("other");
  ASSERT_TRUE(DumpTeacherCache(Options(dir, EncodingOptions::Kind::kTopK), *teacher_).ok());
  CachedTeacherClient::Options o;
  o.dir = dir;
  o.expected.corpus_sha256 = "another corpus";
  o.expected.temperature = 1.0;
  o.expected.seq_len = 64;
  const std::string message(CachedTeacherClient::Open(o).status().message());
  EXPECT_THAT(message, HasSubstr("corpus: cache corpus, run another cor"));
  EXPECT_THAT(message, HasSubstr("temperature: cache 2, run 1"));
  EXPECT_THAT(message, HasSubstr("sequence length: cache 12, run 64"));
  // Dumping into it with other settings is refused too.
  DumpOptions d = Options(dir, EncodingOptions::Kind::kSampled);
  EXPECT_THAT(std::string(DumpTeacherCache(d, *teacher_).status().message()),
              HasSubstr("encoding: cache top-16"));
  // Requests it cannot answer.
  std::unique_ptr<CachedTeacherClient> cache = OpenCache(dir);
  ASSERT_NE(cache, nullptr);
  const torch::Tensor stranger = torch::full({1, kSeqLen}, 7, torch::kInt64);
  EXPECT_EQ(cache->SubmitTargets({stranger, 2.0, {}, {}}).get().status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(cache->SubmitTargets({train_->inputs().narrow(0, 0, 1), 1.0, {}, {}})
                              .get()
                              .status()
                              .message()),
              HasSubstr("temperature 2, not 1"));
  EXPECT_EQ(cache->SubmitTargets({train_->inputs().narrow(0, 0, 1), 2.0, {"layer0"}, {}})
                .get()
                .status()
                .code(),
            absl::StatusCode::kUnimplemented);
}

TEST_F(CacheDumpTest, HostileShardsAreErrorsNamingTheShardAndSequence) {
  const std::string dir = TempDir("hostile");
  ASSERT_TRUE(DumpTeacherCache(Options(dir, EncodingOptions::Kind::kTopK), *teacher_).ok());
  const std::string shard = dir + "/shard-00001.rtc";
  const std::string good = *ReadFile(shard);
  // Verified on open: a damaged shard is named.
  std::string flipped = good;
  flipped[flipped.size() - 5] ^= 0x40;
  ASSERT_TRUE(WriteFileAtomically(shard, flipped).ok());
  CachedTeacherClient::Options o;
  o.dir = dir;
  EXPECT_THAT(std::string(CachedTeacherClient::Open(o).status().message()),
              HasSubstr("shard-00001.rtc is damaged"));
  // Unverified: the record's checksum catches it when read, naming it.
  o.verify = false;
  absl::StatusOr<std::unique_ptr<CachedTeacherClient>> cache = CachedTeacherClient::Open(o);
  ASSERT_TRUE(cache.ok()) << cache.status();
  const torch::Tensor last = train_->inputs().narrow(0, 31, 1);  // shard 1's last sequence
  const absl::Status read = (*cache)->SubmitTargets({last, 2.0, {}, {}}).get().status();
  EXPECT_EQ(read.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(read.message()), HasSubstr("shard-00001.rtc: sequence 31"));
  // Truncated, bad magic, and header damage are refused by the shard reader.
  for (const std::string& bad :
       {good.substr(0, good.size() - 3), "XXXXXXXX" + good.substr(8), good.substr(0, 40)}) {
    absl::StatusOr<std::unique_ptr<CacheShard>> s = CacheShard::FromBytes(bad, "s.rtc");
    EXPECT_EQ(s.status().code(), absl::StatusCode::kDataLoss) << s.status();
    EXPECT_THAT(std::string(s.status().message()), HasSubstr("s.rtc"));
  }
  std::string header = good;
  header[20] ^= 1;  // positions, under the header checksum
  EXPECT_THAT(std::string(CacheShard::FromBytes(header, "h").status().message()),
              HasSubstr("header checksum"));
  // A manifest that lies about its shards.
  std::string manifest = *ReadFile(dir + "/manifest.json");
  manifest.replace(manifest.find("shard-00002.rtc"), 15, "shard-00009.rtc");
  ASSERT_TRUE(WriteFileAtomically(dir + "/manifest.json", manifest).ok());
  EXPECT_EQ(CacheManifest::Read(dir).status().code(), absl::StatusCode::kDataLoss);
}

TEST(CacheShardTest, TheFuzzSeedsAreValidShards) {
  for (const char* name : {"topk.rtc", "sampled.rtc"}) {
    absl::StatusOr<std::unique_ptr<CacheShard>> shard =
        CacheShard::Open(std::string(RETORT_SOURCE_DIR) + "/tests/fuzz/cache_shard_seeds/" + name);
    ASSERT_TRUE(shard.ok()) << shard.status();
    const ShardParams& p = (*shard)->params();
    for (int64_t i = 0; i < (*shard)->sequences(); ++i) {
      absl::StatusOr<RecordView> record = (*shard)->Record(i);
      ASSERT_TRUE(record.ok()) << record.status();
      absl::StatusOr<teacher::TopKLogProbs> decoded = DecodeRecords(
          {*record}, p.positions, p.encoding, p.vocab, [](size_t) { return std::string("seed"); });
      EXPECT_TRUE(decoded.ok()) << name << ": " << decoded.status();
    }
  }
}

}  // namespace
}  // namespace retort::cache
