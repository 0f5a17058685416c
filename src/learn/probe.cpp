#include "mmu/probe.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "base/blas.h"
#include "base/file_util.h"
#include "mmu/error.h"
#include "mmu/linear_model.h"
#include "mmu/store.h"
#include "mmu/text.h"
#include "mmu/where_filter.h"

namespace mmu {

using nlohmann::json;
using text::format_double;

ProbeTask parse_probe_task(const std::string& text) {
  if (text == "regression") return ProbeTask::kRegression;
  if (text == "classification") return ProbeTask::kClassification;
  throw InvalidArgument("--task must be regression or classification, got '" + text + "'");
}

const char* probe_task_name(ProbeTask t) { return t == ProbeTask::kRegression ? "regression" : "classification"; }

namespace {

// ---- labels ----

std::vector<std::string> split_csv_line(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back() += '"', ++i;
      else if (c == '"') quoted = false;
      else out.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      out.emplace_back();
    } else if (c != '\r') {
      out.back() += c;
    }
  }
  return out;
}

std::optional<double> parse_number(const std::string& s) {
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// Label text keyed by "survey\x1fid" (or by id alone when the table has no survey column).
struct LabelTable {
  bool by_survey = false;
  std::map<std::string, std::string> values;
  std::string source;  // for messages
  std::string key(const CatalogRow& r) const { return by_survey ? r.survey + '\x1f' + r.object_id : r.object_id; }
};

LabelTable read_label_csv(const std::string& path, const std::string& target) {
  std::ifstream in(path);
  if (!in) throw NotFound("--labels: cannot read '" + path + "'");
  LabelTable t;
  t.source = "--labels '" + path + "'";
  std::string line;
  if (!std::getline(in, line)) throw InvalidArgument(t.source + " is empty");
  const auto header = split_csv_line(line);
  auto col = [&](const std::string& name) {
    return std::find(header.begin(), header.end(), name) - header.begin();
  };
  const auto id_col = col("object_id"), survey_col = col("survey"), target_col = col(target);
  const auto ncol = static_cast<std::ptrdiff_t>(header.size());
  if (id_col == ncol) throw InvalidArgument(t.source + " has no object_id column (header: " + line + ")");
  if (target_col == ncol)
    throw InvalidArgument("--target '" + target + "' is not a column of " + t.source + " (header: " + line + ")");
  t.by_survey = survey_col != ncol;
  for (int64_t lineno = 2; std::getline(in, line); ++lineno) {
    if (line.empty() || line == "\r") continue;
    const auto f = split_csv_line(line);
    if (static_cast<std::ptrdiff_t>(f.size()) != ncol)
      throw InvalidArgument(t.source + " line " + std::to_string(lineno) + " has " + std::to_string(f.size()) +
                            " fields, the header " + std::to_string(ncol));
    const std::string k = t.by_survey ? f[survey_col] + '\x1f' + f[id_col] : f[id_col];
    if (!f[target_col].empty()) t.values[k] = f[target_col];
  }
  return t;
}

// The stored catalog column `target` of every object that has it, keyed like a CSV without survey
// (but by store row, which is exact).
std::map<int64_t, std::string> read_catalog_column(const Store& store, const std::string& target) {
  const auto names = catalog_columns(store);
  const auto& builtin = builtin_columns();
  if (std::find(builtin.begin(), builtin.end(), target) != builtin.end() ||
      std::find(names.begin(), names.end(), target) == names.end()) {
    std::string list;
    for (size_t i = builtin.size(); i < names.size(); ++i) list += (list.empty() ? "" : ", ") + names[i];
    throw InvalidArgument("--target '" + target + "' is not a stored catalog column of '" + store.path() +
                          "' (columns: " + (list.empty() ? "none" : list) + "); give --labels table.csv for other labels");
  }
  const auto values = store.column_values(target);
  return std::map<int64_t, std::string>(values.begin(), values.end());
}

// The task the labels call for, and why (see load_probe_data).
void infer_task(const std::vector<std::string>& texts, ProbeData* d) {
  const std::string change = "; --task regression|classification overrides";
  std::set<double> distinct;
  bool integral = true;
  for (const auto& t : texts) {
    const auto v = parse_number(t);
    if (!v) {
      d->task = ProbeTask::kClassification;
      d->task_reason = "labels are not all numbers (e.g. '" + t + "')" + change;
      return;
    }
    integral = integral && *v == std::floor(*v) && std::fabs(*v) < 9007199254740992.0;
    distinct.insert(*v);
  }
  const std::string count = std::to_string(distinct.size()) + " distinct values";
  if (integral && distinct.size() <= kMaxInferredClasses) {
    d->task = ProbeTask::kClassification;
    d->task_reason = "labels are integers with " + count + " (<= " + std::to_string(kMaxInferredClasses) + ")" + change;
  } else {
    d->task = ProbeTask::kRegression;
    d->task_reason = "labels are numbers with " + count + (integral ? " (integers, more than " +
                     std::to_string(kMaxInferredClasses) + ")" : ", not all integers") + change;
  }
}

}  // namespace

ProbeData load_probe_data(const Store& store, const std::string& space, const std::string& target,
                          const std::string& labels_csv, std::optional<ProbeTask> task) {
  if (target.empty()) throw InvalidArgument("probe needs --target COLUMN");
  ProbeData d;
  d.space = store.resolve_space_name(space);
  const SpaceInfo info = store.space(d.space);
  d.target = target;
  d.dim = info.dim;
  d.space_sha256 = info.sha256;

  std::optional<LabelTable> table;
  std::map<int64_t, std::string> by_row;
  if (!labels_csv.empty()) table = read_label_csv(labels_csv, target);
  else by_row = read_catalog_column(store, target);
  const std::string source = table ? table->source : "catalog column '" + target + "'";

  std::vector<int64_t> vrows;
  std::vector<std::string> texts;
  const auto pairs = store.space_rows(d.space);
  const size_t step = 8192;
  for (size_t at = 0; at < pairs.size(); at += step) {
    std::vector<int64_t> rows;
    for (size_t i = at; i < std::min(pairs.size(), at + step); ++i) rows.push_back(pairs[i].second);
    const auto objects = store.rows(rows);
    for (size_t i = 0; i < objects.size(); ++i) {
      const std::string* v = nullptr;
      if (table) {
        auto it = table->values.find(table->key(objects[i]));
        if (it != table->values.end()) v = &it->second;
      } else {
        auto it = by_row.find(objects[i].row);
        if (it != by_row.end()) v = &it->second;
      }
      if (!v) continue;
      vrows.push_back(pairs[at + i].first);
      texts.push_back(*v);
      d.ids.push_back(objects[i].object_id);
      d.cells.push_back(objects[i].healpix);
    }
  }
  if (vrows.empty())
    throw InvalidArgument("no object of space '" + d.space + "' has a label in " + source + " (" +
                          std::to_string(table ? table->values.size() : by_row.size()) + " labels" +
                          (table && table->by_survey ? ", matched on survey and object_id" : "") + ")");

  if (task) {
    d.task = *task;
    d.task_reason = "given by --task";
  } else {
    infer_task(texts, &d);
  }
  if (d.task == ProbeTask::kRegression) {
    for (size_t i = 0; i < texts.size(); ++i) {
      const auto v = parse_number(texts[i]);
      if (!v)
        throw InvalidArgument("--target '" + target + "' has the non-numeric value '" + texts[i] + "' (object " +
                              d.ids[i] + ") in " + source + ": use --task classification for classes");
      d.values.push_back(*v);
    }
  } else {
    const std::set<std::string> names(texts.begin(), texts.end());
    d.class_names.assign(names.begin(), names.end());
    for (const auto& t : texts)
      d.classes.push_back(static_cast<int>(std::lower_bound(d.class_names.begin(), d.class_names.end(), t) -
                                           d.class_names.begin()));
  }
  d.X = store.vectors_at(d.space, vrows);
  return d;
}

namespace {

// ---- the protocol's pieces ----

using Index = std::vector<int64_t>;

// Per-feature mean and population standard deviation of rows `idx` (a constant
// feature keeps scale 1, as sklearn's StandardScaler does).
struct Standardiser {
  std::vector<double> mean, scale;
  Standardiser(const ProbeData& d, const Index& idx) : mean(d.dim, 0.0), scale(d.dim, 0.0) {
    const size_t dim = static_cast<size_t>(d.dim);
    for (int64_t i : idx)
      for (size_t j = 0; j < dim; ++j) mean[j] += d.X[i * dim + j];
    for (auto& m : mean) m /= static_cast<double>(idx.size());
    for (int64_t i : idx)
      for (size_t j = 0; j < dim; ++j) scale[j] += std::pow(d.X[i * dim + j] - mean[j], 2);
    for (auto& s : scale) {
      s = std::sqrt(s / static_cast<double>(idx.size()));
      if (s < 1e-12) s = 1;
    }
  }
  Standardiser(std::vector<double> m, std::vector<double> s) : mean(std::move(m)), scale(std::move(s)) {}
  // Rows `idx` standardised, idx.size() x dim.
  std::vector<double> apply(const ProbeData& d, const Index& idx) const {
    const size_t dim = static_cast<size_t>(d.dim);
    std::vector<double> z(idx.size() * dim);
    for (size_t r = 0; r < idx.size(); ++r)
      for (size_t j = 0; j < dim; ++j) z[r * dim + j] = (d.X[idx[r] * dim + j] - mean[j]) / scale[j];
    return z;
  }
};

double mean_of(const std::vector<double>& v, const Index& idx) {
  double s = 0;
  for (int64_t i : idx) s += v[i];
  return s / static_cast<double>(idx.size());
}

// Ridge on standardised train rows: sklearn's Pipeline(StandardScaler, Ridge(alpha)) for each alpha.
// Returns one weight vector per alpha (intercept: the train target mean, the features being centred).
std::vector<std::vector<double>> ridge_weights(const std::vector<double>& z, const std::vector<double>& yc, int64_t n,
                                               int64_t dim, const std::vector<double>& alphas) {
  const int p = static_cast<int>(dim), ni = static_cast<int>(n);
  const double one = 1.0, zero = 0.0;
  std::vector<double> gram(static_cast<size_t>(p) * p), xty(static_cast<size_t>(p), 0.0);
  // z is row-major n x dim, i.e. column-major dim x n: Z'Z = A A' with A = z as (dim x n).
  dsyrk_("U", "N", &p, &ni, &one, z.data(), &p, &zero, gram.data(), &p);
  for (int64_t i = 0; i < n; ++i)
    for (int j = 0; j < p; ++j) xty[j] += z[static_cast<size_t>(i) * p + j] * yc[i];
  std::vector<std::vector<double>> out;
  for (double alpha : alphas) {
    std::vector<double> h = gram, w = xty;
    for (int j = 0; j < p; ++j) h[static_cast<size_t>(j) * p + j] += alpha;
    int info = 0, nrhs = 1;
    dposv_("U", &p, &nrhs, h.data(), &p, w.data(), &p, &info);
    if (info != 0) throw InternalError("ridge regression: singular system (LAPACK info " + std::to_string(info) + ")");
    out.push_back(std::move(w));
  }
  return out;
}

struct RidgeFit {
  Standardiser scaler;
  double y_mean;
  std::vector<std::vector<double>> w;  // per alpha
};

RidgeFit fit_ridge(const ProbeData& d, const Index& train, const std::vector<double>& alphas) {
  RidgeFit f{Standardiser(d, train), mean_of(d.values, train), {}};
  const auto z = f.scaler.apply(d, train);
  std::vector<double> yc;
  for (int64_t i : train) yc.push_back(d.values[i] - f.y_mean);
  f.w = ridge_weights(z, yc, static_cast<int64_t>(train.size()), d.dim, alphas);
  return f;
}

double dot(const double* a, const std::vector<double>& w) {
  double s = 0;
  for (size_t j = 0; j < w.size(); ++j) s += a[j] * w[j];
  return s;
}

// The alpha with the least mean squared error averaged over leave-one-group-out
// splits of `idx` by `group` (sklearn GridSearchCV's choice: first of equals).
double choose_alpha(const ProbeData& d, const Index& idx, const std::vector<int>& group, const std::vector<double>& alphas) {
  std::set<int> groups;
  for (int64_t i : idx) groups.insert(group[i]);
  std::vector<double> mse(alphas.size(), 0.0);
  for (int g : groups) {
    Index train, test;
    for (int64_t i : idx) (group[i] == g ? test : train).push_back(i);
    const RidgeFit f = fit_ridge(d, train, alphas);
    const auto zt = f.scaler.apply(d, test);
    for (size_t a = 0; a < alphas.size(); ++a) {
      double s = 0;
      for (size_t r = 0; r < test.size(); ++r)
        s += std::pow(d.values[test[r]] - (f.y_mean + dot(&zt[r * d.dim], f.w[a])), 2);
      mse[a] += s / static_cast<double>(test.size()) / static_cast<double>(groups.size());
    }
  }
  return alphas[std::min_element(mse.begin(), mse.end()) - mse.begin()];
}

// One-vs-rest logistic regressions on standardised rows; a class absent from
// the train rows gets no model (never predicted).
struct OvrFit {
  std::vector<std::vector<double>> w;
  std::vector<double> b;
};

OvrFit fit_ovr(const ProbeData& d, const std::vector<double>& z, const Index& train, double l2) {
  const std::vector<float> zf(z.begin(), z.end());
  const std::vector<double> weight(train.size(), 1.0);
  OvrFit f;
  for (size_t c = 0; c < d.class_names.size(); ++c) {
    std::vector<uint8_t> y;
    for (int64_t i : train) y.push_back(d.classes[i] == static_cast<int>(c) ? 1 : 0);
    if (std::count(y.begin(), y.end(), 1) == 0) {
      f.w.emplace_back();
      f.b.push_back(-std::numeric_limits<double>::infinity());
      continue;
    }
    if (std::count(y.begin(), y.end(), 0) == 0) {  // only one class in train: it always wins
      f.w.emplace_back(d.dim, 0.0);
      f.b.push_back(std::numeric_limits<double>::infinity());
      continue;
    }
    const LogisticModel m = fit_logistic(zf.data(), static_cast<int64_t>(train.size()), d.dim, y, weight, l2);
    f.w.push_back(m.w);
    f.b.push_back(m.b);
  }
  return f;
}

int argmax_class(const double* z, const std::vector<std::vector<double>>& w, const std::vector<double>& b) {
  int best = 0;
  double best_score = -std::numeric_limits<double>::infinity();
  for (size_t c = 0; c < w.size(); ++c) {
    const double s = w[c].empty() ? b[c] : b[c] + dot(z, w[c]);
    if (s > best_score) best_score = s, best = static_cast<int>(c);
  }
  return best;
}

// k nearest train rows of each test row (Euclidean, standardised), weights 1/d
// (sklearn's weights="distance": exact matches, when any, take all the weight).
void knn_predict(const ProbeData& d, const std::vector<double>& ztrain, const Index& train,
                 const std::vector<double>& ztest, const Index& test, int64_t k, MethodScores* out) {
  const size_t dim = static_cast<size_t>(d.dim), nt = train.size();
  const size_t kk = std::min<size_t>(static_cast<size_t>(k), nt);
  std::vector<std::pair<double, size_t>> dist(nt);
  for (size_t r = 0; r < test.size(); ++r) {
    const double* q = &ztest[r * dim];
    for (size_t t = 0; t < nt; ++t) {
      const double* x = &ztrain[t * dim];
      double s = 0;
      for (size_t j = 0; j < dim; ++j) s += (q[j] - x[j]) * (q[j] - x[j]);
      dist[t] = {std::sqrt(s), t};
    }
    std::partial_sort(dist.begin(), dist.begin() + static_cast<std::ptrdiff_t>(kk), dist.end());
    const bool exact = dist[0].first == 0;
    std::vector<double> votes(d.class_names.size(), 0.0);
    double wsum = 0, ysum = 0;
    for (size_t m = 0; m < kk; ++m) {
      const double w = exact ? (dist[m].first == 0 ? 1.0 : 0.0) : 1.0 / dist[m].first;
      const int64_t i = train[dist[m].second];
      wsum += w;
      if (d.task == ProbeTask::kRegression) ysum += w * d.values[i];
      else votes[d.classes[i]] += w;
    }
    if (d.task == ProbeTask::kRegression) out->predicted[test[r]] = ysum / wsum;
    else out->predicted_class[test[r]] = static_cast<int>(std::max_element(votes.begin(), votes.end()) - votes.begin());
  }
}

void score(const ProbeData& d, MethodScores* m) {
  const int64_t n = d.size();
  if (d.task == ProbeTask::kRegression) {
    const double ybar = std::accumulate(d.values.begin(), d.values.end(), 0.0) / static_cast<double>(n);
    double ss_res = 0, ss_tot = 0;
    int64_t outliers = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double e = m->predicted[i] - d.values[i];
      ss_res += e * e;
      ss_tot += std::pow(d.values[i] - ybar, 2);
      if (std::fabs(e) / (1 + d.values[i]) > 0.15) ++outliers;
    }
    m->r2 = 1 - ss_res / ss_tot;
    m->rmse = std::sqrt(ss_res / static_cast<double>(n));
    m->outlier_fraction = static_cast<double>(outliers) / static_cast<double>(n);
  } else {
    const size_t c = d.class_names.size();
    m->confusion.assign(c, std::vector<int64_t>(c, 0));
    int64_t right = 0;
    for (int64_t i = 0; i < n; ++i) {
      ++m->confusion[d.classes[i]][m->predicted_class[i]];
      right += d.classes[i] == m->predicted_class[i];
    }
    m->accuracy = static_cast<double>(right) / static_cast<double>(n);
    for (size_t t = 0; t < c; ++t) {
      const int64_t total = std::accumulate(m->confusion[t].begin(), m->confusion[t].end(), int64_t{0});
      m->recall.push_back(total ? static_cast<double>(m->confusion[t][t]) / static_cast<double>(total) : 0.0);
    }
  }
}

// Cells shuffled by the seed, each given to the fold with the fewest objects so far.
std::vector<int> assign_folds(const ProbeData& d, int folds, uint64_t seed) {
  std::map<int64_t, int64_t> per_cell;
  for (int64_t c : d.cells) ++per_cell[c];
  if (static_cast<int64_t>(per_cell.size()) < folds)
    throw InvalidArgument("the " + std::to_string(d.size()) + " labelled objects lie in " +
                          std::to_string(per_cell.size()) + " HEALPix cells, fewer than --folds " +
                          std::to_string(folds) + ": folds are grouped by cell (use fewer folds or more labels)");
  std::vector<int64_t> cells;
  for (const auto& kv : per_cell) cells.push_back(kv.first);
  std::mt19937_64 rng(seed);
  for (size_t i = cells.size(); i > 1; --i) std::swap(cells[i - 1], cells[rng() % i]);  // portable Fisher-Yates
  std::vector<int64_t> load(static_cast<size_t>(folds), 0);
  std::map<int64_t, int> fold_of;
  for (int64_t c : cells) {
    const int f = static_cast<int>(std::min_element(load.begin(), load.end()) - load.begin());
    fold_of[c] = f;
    load[f] += per_cell[c];
  }
  std::vector<int> fold;
  for (int64_t c : d.cells) fold.push_back(fold_of[c]);
  return fold;
}

}  // namespace

ProbeReport cross_validate(const ProbeData& d, const ProbeOptions& o) {
  if (o.folds < 2) throw InvalidArgument("--folds must be >= 2, got " + std::to_string(o.folds));
  if (o.knn_k < 1) throw InvalidArgument("k-NN k must be >= 1");
  const int64_t n = d.size();
  if (n < 2 * static_cast<int64_t>(o.folds) || n < 10)
    throw InvalidArgument("only " + std::to_string(n) + " objects of space '" + d.space + "' have a '" + d.target +
                          "' label: too few for " + std::to_string(o.folds) + "-fold cross-validation (need at least " +
                          std::to_string(std::max<int64_t>(10, 2 * o.folds)) + ")");
  if (d.task == ProbeTask::kRegression) {
    const auto [lo, hi] = std::minmax_element(d.values.begin(), d.values.end());
    if (*lo == *hi)
      throw InvalidArgument("--target '" + d.target + "' is constant (" + std::to_string(*lo) + ") over the " +
                            std::to_string(n) + " labelled objects: nothing to predict");
  } else if (d.class_names.size() < 2) {
    throw InvalidArgument("--target '" + d.target + "' has one class ('" + d.class_names.at(0) +
                          "') over the labelled objects: a classifier needs at least two");
  }
  ProbeReport r;
  r.fold = assign_folds(d, o.folds, o.seed);
  r.linear.method = d.task == ProbeTask::kRegression ? "ridge" : "logistic";
  r.knn.method = "knn";
  for (MethodScores* m : {&r.linear, &r.knn}) {
    if (d.task == ProbeTask::kRegression) m->predicted.assign(n, 0.0);
    else m->predicted_class.assign(n, 0);
  }
  for (int f = 0; f < o.folds; ++f) {
    Index train, test;
    for (int64_t i = 0; i < n; ++i) (r.fold[i] == f ? test : train).push_back(i);
    const Standardiser scaler(d, train);
    const auto ztrain = scaler.apply(d, train), ztest = scaler.apply(d, test);
    if (d.task == ProbeTask::kRegression) {
      // Inner CV: leave one of the other outer folds out at a time.
      const double alpha = choose_alpha(d, train, r.fold, o.alphas);
      r.fold_alpha.push_back(alpha);
      const RidgeFit fit = fit_ridge(d, train, {alpha});
      for (size_t t = 0; t < test.size(); ++t) r.linear.predicted[test[t]] = fit.y_mean + dot(&ztest[t * d.dim], fit.w[0]);
    } else {
      const OvrFit fit = fit_ovr(d, ztrain, train, o.logistic_l2);
      for (size_t t = 0; t < test.size(); ++t) r.linear.predicted_class[test[t]] = argmax_class(&ztest[t * d.dim], fit.w, fit.b);
    }
    knn_predict(d, ztrain, train, ztest, test, o.knn_k, &r.knn);
  }
  if (d.task == ProbeTask::kRegression) {
    Index all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    r.alpha = choose_alpha(d, all, r.fold, o.alphas);
  }
  score(d, &r.linear);
  score(d, &r.knn);
  return r;
}

SavedProbe fit_probe(const ProbeData& d, const ProbeOptions& o, double alpha) {
  Index all(static_cast<size_t>(d.size()));
  std::iota(all.begin(), all.end(), 0);
  SavedProbe p;
  p.space = d.space;
  p.space_sha256 = d.space_sha256;
  p.target = d.target;
  p.task = d.task;
  if (d.task == ProbeTask::kRegression) {
    RidgeFit fit = fit_ridge(d, all, {alpha});
    p.mean = fit.scaler.mean;
    p.scale = fit.scaler.scale;
    double var = 0;
    for (double v : d.values) var += std::pow(v - fit.y_mean, 2);
    // Kept z-scored, as the protocol fits it: w predicts (y - y_mean) / y_scale.
    p.y_mean = fit.y_mean;
    p.y_scale = std::sqrt(var / static_cast<double>(d.size()));
    for (double& w : fit.w[0]) w /= p.y_scale;
    p.alpha = alpha;
    p.w = {fit.w[0]};
    p.b = {0.0};
  } else {
    const Standardiser scaler(d, all);
    p.mean = scaler.mean;
    p.scale = scaler.scale;
    const OvrFit fit = fit_ovr(d, scaler.apply(d, all), all, o.logistic_l2);
    p.w = fit.w;
    p.b = fit.b;
    p.class_names = d.class_names;
  }
  return p;
}

namespace {

std::vector<double> standardised(const SavedProbe& p, const float* x) {
  std::vector<double> z(p.mean.size());
  for (size_t j = 0; j < z.size(); ++j) z[j] = (x[j] - p.mean[j]) / p.scale[j];
  return z;
}

}  // namespace

double SavedProbe::predict_value(const float* x) const {
  const auto z = standardised(*this, x);
  return y_mean + y_scale * (b[0] + dot(z.data(), w[0]));
}

int SavedProbe::predict_class(const float* x) const { return argmax_class(standardised(*this, x).data(), w, b); }

void save_probe(const SavedProbe& p, const std::string& path) {
  json j;
  j["format"] = "mmu-probe-1";
  j["space"] = p.space;
  j["space_sha256"] = p.space_sha256;
  j["target"] = p.target;
  j["task"] = probe_task_name(p.task);
  j["mean"] = p.mean;
  j["scale"] = p.scale;
  j["y_mean"] = p.y_mean;
  j["y_scale"] = p.y_scale;
  j["alpha"] = p.alpha;
  j["classes"] = p.class_names;
  j["w"] = p.w;
  // JSON has no infinities: a class never seen in training is null.
  json b = json::array();
  for (double v : p.b) b.push_back(std::isfinite(v) ? json(v) : json(nullptr));
  j["b"] = b;
  // write_atomic fsyncs the parent folder, which a bare file name does not spell.
  files::write_atomic(std::filesystem::absolute(path).string(), j.dump(1) + "\n");
}

SavedProbe load_probe(const std::string& path) {
  const std::string text = files::read_all(path);
  try {
    const json j = json::parse(text);
    if (j.value("format", "") != "mmu-probe-1")
      throw FormatError("--probe '" + path + "' is not an mmu-search probe (no format mmu-probe-1)");
    SavedProbe p;
    p.space = j.at("space").get<std::string>();
    p.space_sha256 = j.at("space_sha256").get<std::string>();
    p.target = j.at("target").get<std::string>();
    p.task = parse_probe_task(j.at("task").get<std::string>());
    p.mean = j.at("mean").get<std::vector<double>>();
    p.scale = j.at("scale").get<std::vector<double>>();
    p.y_mean = j.at("y_mean").get<double>();
    p.y_scale = j.at("y_scale").get<double>();
    p.alpha = j.at("alpha").get<double>();
    p.class_names = j.at("classes").get<std::vector<std::string>>();
    p.w = j.at("w").get<std::vector<std::vector<double>>>();
    for (const auto& v : j.at("b")) p.b.push_back(v.is_null() ? -std::numeric_limits<double>::infinity() : v.get<double>());
    if (p.w.size() != p.b.size() || p.w.empty() || p.mean.size() != p.scale.size())
      throw FormatError("--probe '" + path + "': inconsistent sizes of mean/scale/w/b");
    return p;
  } catch (const json::exception& e) {
    throw FormatError("--probe '" + path + "' is not a valid probe file: " + e.what());
  }
}

// ---- plot ----

namespace {

std::string svg_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

}  // namespace

std::string probe_plot_svg(const ProbeData& d, const MethodScores& m) {
  const double W = 520, H = 520, L = 70, R = 20, T = 40, B = 60;
  const double pw = W - L - R, ph = H - T - B;
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << W << "\" height=\"" << H << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  s << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  if (d.task == ProbeTask::kRegression) {
    double lo = std::numeric_limits<double>::infinity(), hi = -lo;
    for (int64_t i = 0; i < d.size(); ++i)
      lo = std::min({lo, d.values[i], m.predicted[i]}), hi = std::max({hi, d.values[i], m.predicted[i]});
    const double pad = (hi - lo) * 0.03 + 1e-12;
    lo -= pad, hi += pad;
    auto px = [&](double v) { return L + (v - lo) / (hi - lo) * pw; };
    auto py = [&](double v) { return T + ph - (v - lo) / (hi - lo) * ph; };
    s << "<text x=\"" << W / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">" << svg_escape(d.space) << " "
      << m.method << ": " << svg_escape(d.target) << ", R&#178; = " << format_double("%.3f", m.r2) << ", n = " << d.size() << "</text>\n";
    s << "<rect x=\"" << L << "\" y=\"" << T << "\" width=\"" << pw << "\" height=\"" << ph << "\" fill=\"none\" stroke=\"black\"/>\n";
    s << "<line x1=\"" << px(lo) << "\" y1=\"" << py(lo) << "\" x2=\"" << px(hi) << "\" y2=\"" << py(hi)
      << "\" stroke=\"#d62728\" stroke-dasharray=\"4 3\"/>\n";
    for (int k = 0; k <= 4; ++k) {
      const double v = lo + (hi - lo) * k / 4;
      s << "<text x=\"" << px(v) << "\" y=\"" << T + ph + 16 << "\" text-anchor=\"middle\">" << format_double("%.3g", v) << "</text>\n";
      s << "<text x=\"" << L - 6 << "\" y=\"" << py(v) + 4 << "\" text-anchor=\"end\">" << format_double("%.3g", v) << "</text>\n";
    }
    s << "<g fill=\"#1f77b4\" fill-opacity=\"0.5\">\n";
    for (int64_t i = 0; i < d.size(); ++i)
      s << "<circle cx=\"" << format_double("%.1f", px(d.values[i])) << "\" cy=\"" << format_double("%.1f", py(m.predicted[i])) << "\" r=\"2\"/>\n";
    s << "</g>\n";
    s << "<text x=\"" << L + pw / 2 << "\" y=\"" << H - 20 << "\" text-anchor=\"middle\">true " << svg_escape(d.target) << "</text>\n";
    s << "<text transform=\"translate(18," << T + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">predicted (out of fold)</text>\n";
  } else {
    const size_t c = d.class_names.size();
    const double cell = std::min(pw, ph) / static_cast<double>(c);
    s << "<text x=\"" << W / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"14\">" << svg_escape(d.space) << " "
      << m.method << ": " << svg_escape(d.target) << ", accuracy " << format_double("%.3f", m.accuracy) << "</text>\n";
    for (size_t t = 0; t < c; ++t) {
      const int64_t total = std::accumulate(m.confusion[t].begin(), m.confusion[t].end(), int64_t{0});
      for (size_t p = 0; p < c; ++p) {
        const double frac = total ? static_cast<double>(m.confusion[t][p]) / static_cast<double>(total) : 0;
        const int shade = static_cast<int>(255 - 200 * frac);
        s << "<rect x=\"" << L + p * cell << "\" y=\"" << T + t * cell << "\" width=\"" << cell << "\" height=\"" << cell
          << "\" fill=\"rgb(" << shade << "," << shade << ",255)\" stroke=\"white\"/>\n";
        s << "<text x=\"" << L + (p + 0.5) * cell << "\" y=\"" << T + (t + 0.5) * cell + 4 << "\" text-anchor=\"middle\">"
          << m.confusion[t][p] << "</text>\n";
      }
      s << "<text x=\"" << L - 4 << "\" y=\"" << T + (t + 0.5) * cell + 4 << "\" text-anchor=\"end\" font-size=\"10\">"
        << svg_escape(d.class_names[t]) << "</text>\n";
      s << "<text x=\"" << L + (t + 0.5) * cell << "\" y=\"" << T + c * cell + 14 << "\" text-anchor=\"middle\" font-size=\"10\">"
        << svg_escape(d.class_names[t]) << "</text>\n";
    }
    s << "<text x=\"" << L + c * cell / 2 << "\" y=\"" << H - 20 << "\" text-anchor=\"middle\">predicted class (rows: true)</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace mmu
