#include "data/fashion_mnist.h"

#include <numeric>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "common/torch_status.h"
#include "data/idx_reader.h"
#include "data/shuffle.h"

namespace retort::data {
namespace {

// Pixel statistics of the Fashion-MNIST training set (in [0, 1] units).
constexpr double kPixelMean = 0.2860;
constexpr double kPixelStd = 0.3530;
constexpr int64_t kNumClasses = 10;

std::string Path(const std::string& dir, const char* name) { return absl::StrCat(dir, "/", name); }

}  // namespace

absl::StatusOr<std::shared_ptr<TensorDataset>> LoadIdxPair(const std::string& images_path,
                                                           const std::string& labels_path,
                                                           int64_t num_classes) {
  RETORT_ASSIGN_OR_RETURN(IdxArray images, ReadIdxFile(images_path));
  RETORT_ASSIGN_OR_RETURN(IdxArray labels, ReadIdxFile(labels_path));
  if (images.dims.size() != 3) {
    return absl::DataLossError(
        absl::StrCat(images_path, ": expected 3 dimensions (count, rows, cols), found ",
                     images.dims.size(), " [", absl::StrJoin(images.dims, ","), "]"));
  }
  if (labels.dims.size() != 1) {
    return absl::DataLossError(
        absl::StrCat(labels_path, ": expected 1 dimension (count), found ", labels.dims.size()));
  }
  if (images.dims[0] != labels.dims[0]) {
    return absl::DataLossError(absl::StrCat(images_path, " holds ", images.dims[0], " images but ",
                                            labels_path, " holds ", labels.dims[0],
                                            " labels; the two files do not belong together"));
  }
  for (size_t i = 0; i < labels.values.size(); ++i) {
    if (labels.values[i] >= num_classes) {
      return absl::DataLossError(absl::StrCat(labels_path, ": label ", int{labels.values[i]},
                                              " at index ", i, " is not in [0, ", num_classes,
                                              ")"));
    }
  }
  return TorchCall("decoding IDX tensors", [&] {
    int64_t n = images.dims[0];
    torch::Tensor pixels = torch::from_blob(images.values.data(),
                                            {n, 1, images.dims[1], images.dims[2]}, torch::kUInt8)
                               .to(torch::kFloat32)
                               .div_(255.0)
                               .sub_(kPixelMean)
                               .div_(kPixelStd);
    torch::Tensor y = torch::from_blob(labels.values.data(), {n}, torch::kUInt8).to(torch::kLong);
    return std::make_shared<TensorDataset>(pixels, y, num_classes);
  });
}

absl::StatusOr<TrainValidationSplit> LoadFashionMnistTrain(const FashionMnistOptions& options) {
  RETORT_ASSIGN_OR_RETURN(
      std::shared_ptr<TensorDataset> all,
      LoadIdxPair(Path(options.dir, "train-images-idx3-ubyte.gz"),
                  Path(options.dir, "train-labels-idx1-ubyte.gz"), kNumClasses));
  int64_t n = all->size();
  if (options.validation_size < 0 || options.validation_size >= n) {
    return absl::InvalidArgumentError(
        absl::StrCat("--validation_size=", options.validation_size, " must be in [0, ", n, ")"));
  }
  std::vector<int64_t> order(static_cast<size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  ShuffleInPlace(order, options.split_seed, /*stream=*/0xfa5410);
  auto cut = order.begin() + options.validation_size;
  std::vector<int64_t> validation(order.begin(), cut);
  std::vector<int64_t> train(cut, order.end());
  if (options.train_limit > 0 && options.train_limit < static_cast<int64_t>(train.size())) {
    train.resize(static_cast<size_t>(options.train_limit));
  }
  return TorchCall("splitting Fashion-MNIST", [&] {
    return TrainValidationSplit{all->Subset(train), all->Subset(validation)};
  });
}

absl::StatusOr<std::shared_ptr<TensorDataset>> LoadFashionMnistTest(
    const FashionMnistOptions& options) {
  return LoadIdxPair(Path(options.dir, "t10k-images-idx3-ubyte.gz"),
                     Path(options.dir, "t10k-labels-idx1-ubyte.gz"), kNumClasses);
}

}  // namespace retort::data
