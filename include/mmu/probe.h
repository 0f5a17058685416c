// Linear probes and zero-shot k-NN on a space's embeddings, by the protocol of
// the AstroCLIP/AION papers (docs/MODELS.md §1.6): embeddings standardised on
// the train split, regression targets z-scored on it; ridge regression whose
// penalty is chosen by inner cross-validation, one-vs-rest logistic regression
// for classes, k-NN (k = 64, 1/distance weights, Euclidean on the standardised
// embeddings). K-fold cross-validation groups objects by HEALPix cell so that
// sky neighbours never sit on both sides of a split.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mmu {

class Store;

enum class ProbeTask { kRegression, kClassification };
// "regression" or "classification"; throws InvalidArgument naming --task otherwise.
ProbeTask parse_probe_task(const std::string& text);
const char* probe_task_name(ProbeTask t);

// The labelled objects of one space, in vector-row order.
struct ProbeData {
  std::string space, target;
  ProbeTask task = ProbeTask::kRegression;
  std::string task_reason;  // why this task, for the output: given, or inferred from the labels
  int64_t dim = 0;
  std::vector<std::string> ids;
  std::vector<int64_t> cells;              // nside-16 HEALPix cell of each object
  std::vector<float> X;                    // ids.size() x dim embeddings
  std::vector<double> values;              // regression targets
  std::vector<int> classes;                // classification: index into class_names
  std::vector<std::string> class_names;    // sorted
  std::string space_sha256;
  int64_t size() const { return static_cast<int64_t>(ids.size()); }
};

// Labels of `target` for the objects of `space`: from a CSV keyed by
// object_id (a `survey` column, when present, disambiguates ids) when
// labels_csv is given, else from the stored catalog column `target`. Without
// `task`: classification for labels that are not all numbers (strings,
// booleans as text) and for integers with at most kMaxInferredClasses distinct
// values (a 0/1 flag is a class, not a quantity); regression otherwise. Throws
// InvalidArgument naming the file/column for a missing column, non-numeric
// regression targets, or no labelled object of the space.
constexpr size_t kMaxInferredClasses = 20;
ProbeData load_probe_data(const Store& store, const std::string& space, const std::string& target,
                          const std::string& labels_csv, std::optional<ProbeTask> task);

struct ProbeOptions {
  int folds = 5;
  uint64_t seed = 1;  // which cells go to which fold
  int64_t knn_k = 64;
  std::vector<double> alphas = {1e-3, 1e-2, 1e-1, 1, 10, 100, 1000};  // ridge penalties tried
  double logistic_l2 = 1.0;  // sklearn's C = 1
};

struct MethodScores {
  std::string method;                // "ridge", "logistic", "knn"
  std::vector<double> predicted;     // regression: out-of-fold prediction per object
  std::vector<int> predicted_class;  // classification: out-of-fold class per object
  double r2 = 0, rmse = 0, outlier_fraction = 0;  // regression; outliers: |pred-true|/(1+true) > 0.15
  double accuracy = 0;                            // classification: top-1
  std::vector<double> recall;                     // per class
  std::vector<std::vector<int64_t>> confusion;    // [true][predicted]
};

struct ProbeReport {
  std::vector<int> fold;           // per object, 0-based
  std::vector<double> fold_alpha;  // ridge penalty chosen in each fold (regression)
  double alpha = 0;                // chosen by the same inner CV over all objects, for the saved probe
  MethodScores linear, knn;
};

// Throws InvalidArgument for a constant target, fewer than 2 classes, or
// fewer labelled objects (or cells) than folds.
ProbeReport cross_validate(const ProbeData& data, const ProbeOptions& options);

// A linear probe fitted on all labelled objects, applicable to any vector of
// its space.
struct SavedProbe {
  std::string space, space_sha256, target;
  ProbeTask task = ProbeTask::kRegression;
  std::vector<double> mean, scale;  // standardiser of the embeddings
  double y_mean = 0, y_scale = 1;   // target z-scoring (regression)
  double alpha = 0;                 // ridge penalty (regression)
  std::vector<std::vector<double>> w;  // one row (regression) or one per class
  std::vector<double> b;
  std::vector<std::string> class_names;

  double predict_value(const float* x) const;  // regression, in target units
  int predict_class(const float* x) const;     // classification: the highest-scoring class
};

SavedProbe fit_probe(const ProbeData& data, const ProbeOptions& options, double alpha);
void save_probe(const SavedProbe& probe, const std::string& path);  // JSON, written atomically
SavedProbe load_probe(const std::string& path);                     // throws naming the file

// SVG (hand-written): predicted vs true for regression, the confusion matrix for classes.
std::string probe_plot_svg(const ProbeData& data, const MethodScores& scores);

}  // namespace mmu
