// End-to-end tests of the retort binary: real processes, real files.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <random>

#include <torch/script.h>
#include <nlohmann/json.hpp>

#include "common/file_util.h"
#include "common/subprocess.h"
#include "tests/cli/cli_test_util.h"

namespace retort {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using clitest::Result;

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(std::filesystem::temp_directory_path() /
                                     ("retort_cli_test_" + std::to_string(::getpid())));
    std::filesystem::create_directories(*dir_ / "data");
    // A small Fashion-MNIST look-alike: 300 training and 100 test images.
    clitest::WriteDataset(*dir_ / "data", 300, 100);
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::string Path(const std::string& name) { return (*dir_ / name).string(); }

  static Result Run(const std::string& args) {
    return clitest::RunBinary(RETORT_BINARY, args, *dir_);
  }

  static std::string Data() {
    return "--data_dir=" + Path("data") + " --validation_size=50 --threads=1";
  }

  static void ExpectOneCleanErrorLine(const Result& r, const std::string& must_contain) {
    EXPECT_NE(r.exit_code, 0);
    EXPECT_EQ(r.ErrLines(), 1) << r.err;
    EXPECT_THAT(r.err, HasSubstr(must_contain));
    EXPECT_THAT(r.err, Not(HasSubstr("frame #")));
    EXPECT_THAT(r.err, Not(HasSubstr("Exception raised from")));
  }

  static std::filesystem::path* dir_;
};

std::filesystem::path* CliTest::dir_ = nullptr;

TEST_F(CliTest, HelpListsCommandsAndTheirFlags) {
  Result help = Run("help");
  EXPECT_EQ(help.exit_code, 0);
  for (const char* c : {"train", "distill", "eval", "demo", "teacher serve", "bench serve"}) {
    EXPECT_THAT(help.out, HasSubstr(c));
  }
  Result serve = Run("help teacher serve");
  EXPECT_EQ(serve.exit_code, 0);
  EXPECT_THAT(serve.out, HasSubstr("--drain_timeout"));
  EXPECT_THAT(serve.out, HasSubstr("--tls_client_ca"));
  Result demo = Run("help demo");
  EXPECT_EQ(demo.exit_code, 0);
  EXPECT_THAT(demo.out, HasSubstr("--teacher_epochs"));
  EXPECT_THAT(demo.out, HasSubstr("--temperature"));
  Result train = Run("train --help");
  EXPECT_EQ(train.exit_code, 0);
  EXPECT_THAT(train.out, HasSubstr("--hidden"));
  EXPECT_THAT(train.out, Not(HasSubstr("--teacher_epochs")));
  EXPECT_NE(Run("frobnicate").exit_code, 0);
}

TEST_F(CliTest, BadFlagsGiveOneErrorLine) {
  ExpectOneCleanErrorLine(Run("train --epochs=abc"), "epochs");
  ExpectOneCleanErrorLine(Run("train --no_such_flag=1"), "no_such_flag");
  // A flag of another command is refused, naming the command and who takes it.
  ExpectOneCleanErrorLine(Run("lm train --hidden=5"), "retort lm train does not take --hidden");
  ExpectOneCleanErrorLine(Run("lm train --hidden=5000 --jitter=3"),
                          "it is a flag of `retort train`");
  ExpectOneCleanErrorLine(Run("train --seq_len=64"),
                          "retort train does not take --seq_len; it is a flag of");
  ExpectOneCleanErrorLine(Run("lm train --teacher_output=topk"),
                          "retort lm train does not take --teacher_output");
  // Devices: this LibTorch has no CUDA; a name that is no device.
  ExpectOneCleanErrorLine(Run("train --device=cuda --epochs=1 --train_limit=64 --out_dir=" +
                              Path("cuda") + " " + Data()),
                          "--device=cuda: this build's LibTorch has no CUDA");
  ExpectOneCleanErrorLine(Run("train --device=tpu --out_dir=" + Path("tpu") + " " + Data()),
                          "--device='tpu' is not a device");
  ExpectOneCleanErrorLine(Run("distill --alpha=2 --out_dir=" + Path("x") + " " + Data()),
                          "--alpha must be in [0, 1]");
  ExpectOneCleanErrorLine(Run("train --hidden=12,abc --out_dir=" + Path("x")), "'abc'");
  ExpectOneCleanErrorLine(Run("train --arch=resnet --out_dir=" + Path("x")), "--arch");
  ExpectOneCleanErrorLine(Run("eval --split=train --checkpoint=x.pt"), "--split");
  ExpectOneCleanErrorLine(Run("train " + Data()), "--out_dir");
}

TEST_F(CliTest, MissingAndCorruptDataGiveOneErrorLineNamingTheFile) {
  ExpectOneCleanErrorLine(Run("train --data_dir=/nonexistent/fm --out_dir=" + Path("m")),
                          "/nonexistent/fm/train-images-idx3-ubyte.gz does not exist");
  std::filesystem::create_directories(*dir_ / "bad");
  for (const char* f :
       {"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    std::filesystem::copy_file(*dir_ / "data" / f, *dir_ / "bad" / f,
                               std::filesystem::copy_options::overwrite_existing);
  }
  std::string good = *ReadFile(Path("data/train-images-idx3-ubyte.gz"));
  ASSERT_TRUE(
      WriteFileAtomically(Path("bad/train-images-idx3-ubyte.gz"), good.substr(0, good.size() / 2))
          .ok());
  ExpectOneCleanErrorLine(Run("train --data_dir=" + Path("bad") + " --out_dir=" + Path("m")),
                          "bad/train-images-idx3-ubyte.gz: not a valid gzip file");
  // A well-formed gzip holding a wrong IDX header.
  clitest::WriteIdx(*dir_ / "bad" / "train-images-idx3-ubyte.gz", {10, 28},
                    std::vector<uint8_t>(280));
  ExpectOneCleanErrorLine(Run("train --data_dir=" + Path("bad") + " --out_dir=" + Path("m")),
                          "expected 3 dimensions");
}

TEST_F(CliTest, TrainEvalDistillAndCheckpointMismatch) {
  const std::string teacher_dir = Path("teacher");
  Result train =
      Run("train --hidden=64 --epochs=2 --batch_size=25 --out_dir=" + teacher_dir + " " + Data());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  EXPECT_THAT(train.err, HasSubstr("epoch 2/2"));

  Result eval = Run("eval --checkpoint=" + teacher_dir +
                    "/best.pt --json_out=" + Path("eval.json") + " " + Data());
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_THAT(eval.out, HasSubstr("test accuracy"));
  nlohmann::json json = nlohmann::json::parse(*ReadFile(Path("eval.json")));
  EXPECT_EQ(json["examples"], 100);
  EXPECT_GT(json["accuracy"].get<double>(), 0.5);  // the bands are easy; chance is 0.1

  // Resuming with another architecture names both.
  ExpectOneCleanErrorLine(
      Run("train --hidden=16 --epochs=2 --batch_size=25 --resume=auto --out_dir=" + teacher_dir +
          " " + Data()),
      "holds a mlp 784-64-10 but this run builds a mlp 784-16-10");
  // Re-running into a directory with a checkpoint is refused, not clobbered.
  ExpectOneCleanErrorLine(
      Run("train --hidden=64 --epochs=2 --batch_size=25 --out_dir=" + teacher_dir + " " + Data()),
      "--resume");

  Result distill = Run("distill --teacher=" + teacher_dir + "/best.pt --hidden=8 --epochs=1 " +
                       "--batch_size=25 --temperature=2 --alpha=0.5 --out_dir=" + Path("student") +
                       " " + Data());
  ASSERT_EQ(distill.exit_code, 0) << distill.err;
  EXPECT_THAT(distill.err, HasSubstr("distilled at T=2 alpha=0.5"));

  ASSERT_TRUE(WriteFileAtomically(Path("junk.pt"), "not a checkpoint").ok());
  ExpectOneCleanErrorLine(
      Run("distill --teacher=" + Path("junk.pt") + " --out_dir=" + Path("s2") + " " + Data()),
      "junk.pt is not a readable checkpoint");
  ExpectOneCleanErrorLine(Run("eval --checkpoint=" + Path("junk.pt") + " " + Data()), "junk.pt");
}

// A CNN loses half its channels and units (a smaller dense model), then is
// distilled back from the CNN it was cut from, starting from its own weights.
TEST_F(CliTest, PrunedCnnRecoversByDistillation) {
  Result train =
      Run("train --arch=cnn --hidden=8,16,32 --epochs=2 --batch_size=25 --out_dir=" + Path("cnn") +
          " " + Data());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  Result prune = Run("prune --checkpoint=" + Path("cnn/best.pt") +
                     " --structured --fraction=0.5 --multiple_of=2 --bench_tokens=256 --out_dir=" +
                     Path("cnn_pruned") + " " + Data());
  ASSERT_EQ(prune.exit_code, 0) << prune.err;
  const nlohmann::json pruned = nlohmann::json::parse(*ReadFile(Path("cnn_pruned/prune.json")));
  EXPECT_EQ(pruned["spec"]["hidden"], nlohmann::json::parse("[4, 8, 16]"));
  EXPECT_LT(pruned["rows"][1]["parameters"].get<int64_t>(),
            pruned["rows"][0]["parameters"].get<int64_t>() / 3);
  Result recover = Run(
      "distill --init_from=" + Path("cnn_pruned/model.pt") + " --teacher=" + Path("cnn/best.pt") +
      " --epochs=3 --batch_size=25 --lr=1e-3 --out_dir=" + Path("cnn_recovered") + " " + Data());
  ASSERT_EQ(recover.exit_code, 0) << recover.err;
  EXPECT_THAT(recover.err, HasSubstr("conv4-conv8-fc16"));
  Result eval = Run("eval --checkpoint=" + Path("cnn_recovered/best.pt") +
                    " --json_out=" + Path("cnn_recovered.json") + " " + Data());
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  const double recovered =
      nlohmann::json::parse(*ReadFile(Path("cnn_recovered.json")))["accuracy"].get<double>();
  const double before = pruned["rows"][0]["test accuracy"].get<double>();
  const double after_pruning = pruned["rows"][1]["test accuracy"].get<double>();
  std::printf("cnn test accuracy %.3f, pruned %.3f, recovered %.3f\n", before, after_pruning,
              recovered);
  EXPECT_GE(recovered, after_pruning);
  // The checkpoint's architecture is the model's: a mismatch cannot happen
  // through the flags, and a file that is not a checkpoint names itself.
  ASSERT_TRUE(WriteFileAtomically(Path("not_a_model.pt"), "junk").ok());
  ExpectOneCleanErrorLine(
      Run("train --init_from=" + Path("not_a_model.pt") + " --out_dir=" + Path("x") + " " + Data()),
      "--init_from");
}

TEST_F(CliTest, FeatureMatchingAndTeacherAssistantChain) {
  const std::string teacher_dir = Path("deep_teacher");
  Result train = Run("train --hidden=64,32 --epochs=1 --batch_size=25 --out_dir=" + teacher_dir +
                     " " + Data());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  const std::string teacher = " --teacher=" + teacher_dir + "/best.pt";

  Result features =
      Run("distill" + teacher + " --feature_weight=0.5 --adapter=mlp --hidden=8 " +
          "--epochs=1 --batch_size=25 --out_dir=" + Path("fm_student") + " " + Data());
  ASSERT_EQ(features.exit_code, 0) << features.err;
  EXPECT_THAT(*ReadFile(Path("fm_student/metrics.jsonl")), HasSubstr("train_feature_loss"));
  // The student is a plain classifier: eval reads it.
  Result eval = Run("eval --checkpoint=" + Path("fm_student/best.pt") + " " + Data());
  ASSERT_EQ(eval.exit_code, 0) << eval.err;
  EXPECT_THAT(eval.out, HasSubstr("mlp 784-8-10"));

  // Mapping errors name what exists.
  ExpectOneCleanErrorLine(Run("distill" + teacher + " --feature_weight=1 --match=s0:t9 " +
                              "--out_dir=" + Path("fm_bad") + " " + Data()),
                          "the teacher has no layer 't9'; its hidden layers are t0=fc0 [64], "
                          "t1=fc1 [32]");
  ExpectOneCleanErrorLine(
      Run("distill" + teacher + " --match=s0:t1 --out_dir=" + Path("fm_bad") + " " + Data()),
      "--feature_weight is 0");
  ExpectOneCleanErrorLine(Run("distill" + teacher + " --feature_weight=1 --feature_loss=l1 " +
                              "--out_dir=" + Path("fm_bad") + " " + Data()),
                          "--feature_loss must be mse or cosine");

  // The chain: teacher -> assistant -> student, each an ordinary checkpoint.
  Result chain = Run("chain" + teacher + " --assistant_hidden=32 --hidden=8 --epochs=1 " +
                     "--batch_size=25 --out_dir=" + Path("chain") + " " + Data());
  ASSERT_EQ(chain.exit_code, 0) << chain.err;
  EXPECT_THAT(chain.err, HasSubstr("[chain:assistant]"));
  EXPECT_THAT(chain.err, HasSubstr("[chain:student]"));
  nlohmann::json summary = nlohmann::json::parse(*ReadFile(Path("chain/chain.json")));
  EXPECT_EQ(summary["assistant"]["test"]["architecture"], "mlp 784-32-10");
  EXPECT_EQ(summary["student"]["test"]["architecture"], "mlp 784-8-10");
  EXPECT_EQ(summary["student"]["test"]["examples"], 100);
  // The chain refuses what would break it, before training anything.
  ExpectOneCleanErrorLine(Run("chain" + teacher + " --stop_after_steps=3 --out_dir=" +
                              Path("chain_bad") + " " + Data()),
                          "does not take --stop_after_steps");
  // s0:t1 fits the teacher (two hidden layers) but not the one-layer
  // assistant the student learns from in stage 2.
  ExpectOneCleanErrorLine(Run("chain" + teacher + " --assistant_hidden=32 --feature_weight=1 " +
                              "--match=s0:t1 --out_dir=" + Path("chain_bad") + " " + Data()),
                          "stage 2 (assistant -> student): --match: the teacher has no layer 't1'");
  EXPECT_FALSE(PathExists(Path("chain_bad/assistant/best.pt")));
  // Stage 2 alone is plain distillation from the assistant.
  Result alone =
      Run("distill --teacher=" + Path("chain/assistant/best.pt") +
          " --hidden=8 --epochs=1 --batch_size=25 --out_dir=" + Path("chain_alone") + " " + Data());
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
}

TEST_F(CliTest, QuickDemoWritesSummaryAndReusesItsTeacher) {
  const std::string flags = "demo --quick --work_dir=" + Path("work") +
                            " --teacher_arch=mlp --teacher_hidden=64 --hidden=16 --batch_size=25 " +
                            Data();
  Result first = Run(flags);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  EXPECT_THAT(first.out, HasSubstr("distilled"));
  nlohmann::json summary = nlohmann::json::parse(*ReadFile(Path("work/quick/summary.json")));
  for (const char* stage : {"teacher", "scratch", "distilled"}) {
    ASSERT_TRUE(summary.contains(stage)) << stage;
    EXPECT_EQ(summary[stage]["examples"], 100);
    EXPECT_GT(summary[stage]["parameters"].get<int64_t>(), 0);
    EXPECT_GT(summary[stage]["checkpoint_bytes"].get<int64_t>(), 0);
    EXPECT_TRUE(summary[stage].contains("errors"));
    EXPECT_TRUE(summary[stage].contains("wall_seconds"));
  }
  for (const char* key : {"temperature", "alpha", "seed", "student_epochs", "teacher_epochs"}) {
    EXPECT_TRUE(summary.contains(key)) << key;
  }
  EXPECT_FALSE(summary["teacher"]["cached"].get<bool>());
  // The distilled student asked a teacher server process over gRPC.
  EXPECT_EQ(summary["teacher_mode"], "remote");
  EXPECT_THAT(first.err, HasSubstr("[teacher] server process on 127.0.0.1:"));

  Result second = Run(flags);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_THAT(second.err, HasSubstr("[teacher] reusing"));
  nlohmann::json again = nlohmann::json::parse(*ReadFile(Path("work/quick/summary.json")));
  EXPECT_TRUE(again["teacher"]["cached"].get<bool>());
  EXPECT_EQ(again["teacher"]["accuracy"], summary["teacher"]["accuracy"]);

  // A teacher whose weights changed on disk is not trusted.
  std::string weights = *ReadFile(Path("work/quick/teacher/best.pt"));
  weights[weights.size() / 2] ^= 1;
  ASSERT_TRUE(WriteFileAtomically(Path("work/quick/teacher/best.pt"), weights).ok());
  Result third = Run(flags);
  ASSERT_EQ(third.exit_code, 0) << third.err;
  EXPECT_THAT(third.err, HasSubstr("missing or changed; training anew"));
}

TEST_F(CliTest, TeacherServeBadFlagsGiveOneErrorLine) {
  ExpectOneCleanErrorLine(Run("teacher serve"), "give exactly one of --checkpoint");
  ExpectOneCleanErrorLine(Run("teacher serve --checkpoint=a.pt --torchscript=b.pt"),
                          "give exactly one of --checkpoint");
  ExpectOneCleanErrorLine(Run("teacher serve --checkpoint=" + Path("none.pt")), "none.pt");
  ASSERT_TRUE(WriteFileAtomically(Path("token"), "s3cret\n").ok());
  ExpectOneCleanErrorLine(Run("teacher serve --max_delay_ms=-1 --checkpoint=x.pt"),
                          "--max_delay_ms");
  ExpectOneCleanErrorLine(Run("distill --teacher_address=127.0.0.1:1 --teacher_output=sparse "
                              "--out_dir=" +
                              Path("s9") + " " + Data()),
                          "--teacher_output must be dense or topk");
  ExpectOneCleanErrorLine(Run("distill --teacher_address=127.0.0.1:1 --teacher_token_file=" +
                              Path("token") + " --out_dir=" + Path("s9") + " " + Data()),
                          "--teacher_insecure_token");
  // Nothing listens on port 1: the error names the address.
  ExpectOneCleanErrorLine(Run("distill --teacher_address=127.0.0.1:1 --teacher_connect_timeout=1 "
                              "--out_dir=" +
                              Path("s9") + " " + Data()),
                          "teacher at 127.0.0.1:1 did not answer");
}

TEST_F(CliTest, DistillOverGrpcFromATeacherServerThatDrainsOnSigterm) {
  const std::string teacher_dir = Path("served_teacher");
  Result train =
      Run("train --hidden=32 --epochs=1 --batch_size=25 --out_dir=" + teacher_dir + " " + Data());
  ASSERT_EQ(train.exit_code, 0) << train.err;
  ASSERT_TRUE(WriteFileAtomically(Path("serve_token"), "s3cret\n").ok());
  Subprocess::Options serve;
  serve.argv = {RETORT_BINARY,
                "teacher",
                "serve",
                "--checkpoint=" + teacher_dir + "/best.pt",
                "--listen=127.0.0.1:0",
                "--port_file=" + Path("serve.port"),
                "--auth_token_file=" + Path("serve_token"),
                "--allow_insecure_token",
                "--threads=1"};
  serve.stderr_path = Path("serve.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(serve);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::string> port =
      WaitForFile(Path("serve.port"), server->get(), absl::Seconds(60));
  ASSERT_TRUE(port.ok()) << port.status() << *ReadFile(Path("serve.log"));
  const std::string address = "127.0.0.1:" + *port;

  // Without the token the teacher refuses, and says why.
  ExpectOneCleanErrorLine(
      Run("distill --teacher_address=" + address + " --out_dir=" + Path("s_noauth") + " " + Data()),
      "bearer token");
  Result distill =
      Run("distill --teacher_address=" + address + " --teacher_token_file=" + Path("serve_token") +
          " --teacher_insecure_token --teacher_output=topk --teacher_top_k=3 "
          "--teacher_value_dtype=bf16 --hidden=8 --epochs=1 --batch_size=25 --out_dir=" +
          Path("s_remote") + " " + Data());
  ASSERT_EQ(distill.exit_code, 0) << distill.err;
  EXPECT_THAT(distill.err, HasSubstr("at " + address));
  EXPECT_THAT(distill.err, HasSubstr("top-3 bf16"));
  EXPECT_TRUE(PathExists(Path("s_remote/best.pt")));
  // Feature matching over the wire: the teacher's hidden layer travels in
  // bf16 beside the logits.
  Result features =
      Run("distill --teacher_address=" + address + " --teacher_token_file=" + Path("serve_token") +
          " --teacher_insecure_token --teacher_value_dtype=bf16 --feature_weight=1 "
          "--match=s0:t0 --feature_loss=cosine --hidden=8 --epochs=1 --batch_size=25 --out_dir=" +
          Path("s_features") + " " + Data());
  ASSERT_EQ(features.exit_code, 0) << features.err;
  EXPECT_THAT(*ReadFile(Path("s_features/metrics.jsonl")), HasSubstr("train_feature_loss"));

  // A second signal during the drain must not cut it short.
  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  (*server)->Signal(SIGINT).IgnoreError();
  absl::StatusOr<int> exit = (*server)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
  std::string log = *ReadFile(Path("serve.log"));
  // Both signals may be pending at once; the kernel then delivers the
  // lower-numbered SIGINT first, so either may name the drain.
  EXPECT_THAT(log, ::testing::ContainsRegex("(SIGTERM|SIGINT): draining"));
  EXPECT_THAT(log, HasSubstr("every accepted request was answered"));
}

TEST_F(CliTest, ServesAUsersTorchScriptModule) {
  // What a user exports with torch.jit.script(...).save(): forward maps
  // images to logits.
  torch::jit::Module module("UserNet");
  module.register_parameter("w", torch::randn({784, 10}) * 0.05, /*is_buffer=*/false);
  module.define(R"(
def forward(self, x):
    return x.flatten(1).matmul(self.w)
)");
  module.save(Path("user_net.pt"));
  ASSERT_TRUE(WriteFileAtomically(Path("not_torchscript.pt"), "garbage").ok());
  ExpectOneCleanErrorLine(Run("teacher serve --torchscript=" + Path("not_torchscript.pt")),
                          "not_torchscript.pt");
  ExpectOneCleanErrorLine(
      Run("teacher serve --torchscript=" + Path("user_net.pt") + " --input_shape=1,28,27"),
      "warm-up forward");

  Subprocess::Options serve;
  serve.argv = {RETORT_BINARY,
                "teacher",
                "serve",
                "--torchscript=" + Path("user_net.pt"),
                "--input_shape=1,28,28",
                "--listen=127.0.0.1:0",
                "--port_file=" + Path("ts.port"),
                "--threads=1"};
  serve.stderr_path = Path("ts.log");
  absl::StatusOr<std::unique_ptr<Subprocess>> server = Subprocess::Start(serve);
  ASSERT_TRUE(server.ok()) << server.status();
  absl::StatusOr<std::string> port = WaitForFile(Path("ts.port"), server->get(), absl::Seconds(60));
  ASSERT_TRUE(port.ok()) << port.status() << *ReadFile(Path("ts.log"));
  Result distill =
      Run("distill --teacher_address=127.0.0.1:" + *port +
          " --hidden=8 --epochs=1 --batch_size=25 --out_dir=" + Path("s_ts") + " " + Data());
  ASSERT_EQ(distill.exit_code, 0) << distill.err;
  EXPECT_THAT(distill.err, HasSubstr("torchscript"));
  EXPECT_THAT(distill.err, HasSubstr("UserNet"));
  ASSERT_TRUE((*server)->Signal(SIGTERM).ok());
  absl::StatusOr<int> exit = (*server)->Wait(absl::Seconds(60));
  ASSERT_TRUE(exit.ok()) << exit.status();
  EXPECT_EQ(*exit, 0);
}

TEST_F(CliTest, FlagfileHoldsAWholeJob) {
  std::ofstream(Path("job.flags"))
      << "--hidden=8\n--epochs=1\n--batch_size=25\n--out_dir=" << Path("fromfile")
      << "\n--data_dir=" << Path("data") << "\n--validation_size=50\n--threads=1\n";
  Result r = Run("train --flagfile=" + Path("job.flags"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("mlp 784-8-10"));
  EXPECT_TRUE(PathExists(Path("fromfile/best.pt")));
}

}  // namespace
}  // namespace retort
