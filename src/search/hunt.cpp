#include "mmu/hunt.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <unordered_set>

#include "mmu/error.h"
#include "mmu/linear_model.h"
#include "mmu/progress.h"

namespace mmu {

namespace {

// Catalog rows a hunt never returns: its examples and the partners whose vectors stood in for them.
std::vector<int64_t> rows_used(const std::vector<ObjectVector>& a, const std::vector<ObjectVector>& b) {
  std::vector<int64_t> out;
  for (const auto* list : {&a, &b})
    for (const ObjectVector& o : *list) {
      out.push_back(o.object.row);
      out.push_back(o.owner);
    }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

// Seeded random vector rows of `space` whose objects are not in `used`.
std::vector<int64_t> background_rows(const Store& store, const std::string& space, int64_t want,
                                     const std::vector<int64_t>& used, uint64_t seed) {
  const int64_t count = store.space(space).count;
  want = std::min(want, count - static_cast<int64_t>(used.size()));
  std::vector<int64_t> vrows(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) vrows[i] = i;
  std::mt19937_64 rng(seed);
  std::shuffle(vrows.begin(), vrows.end(), rng);
  vrows.resize(static_cast<size_t>(std::min<int64_t>(count, want + static_cast<int64_t>(used.size()))));
  const std::vector<int64_t> rows = store.rows_of_vectors(space, vrows);
  std::vector<int64_t> out;
  for (size_t i = 0; i < vrows.size() && static_cast<int64_t>(out.size()) < want; ++i)
    if (!std::binary_search(used.begin(), used.end(), rows[i])) out.push_back(vrows[i]);
  std::sort(out.begin(), out.end());
  return out;
}

std::string count_of(size_t n, const char* what) { return std::to_string(n) + " " + what + (n == 1 ? "" : "s"); }

}  // namespace

LikeResult hunt(const Store& store, const HuntQuery& h) {
  if (h.positives.empty()) throw InvalidArgument("a hunt needs at least one positive example (--positives)");
  std::string space = h.search.space;
  const std::vector<ObjectVector> pos = object_vectors(store, h.positives, h.search.survey, &space);
  const std::vector<ObjectVector> neg = object_vectors(store, h.negatives, h.search.survey, &space);
  const std::vector<int64_t> used = rows_used(pos, neg);
  const int64_t dim = static_cast<int64_t>(pos.front().vector.size());

  if (h.method == HuntMethod::kMean) {
    std::vector<double> mean(static_cast<size_t>(dim), 0.0);
    for (const ObjectVector& o : pos)
      for (int64_t j = 0; j < dim; ++j) mean[j] += o.vector[j];
    double norm = 0;
    for (double x : mean) norm += x * x;
    std::vector<float> q(static_cast<size_t>(dim));
    for (int64_t j = 0; j < dim; ++j) q[j] = static_cast<float>(mean[j] / std::sqrt(norm));
    LikeResult r = search_with_vector(store, space, q, used, h.search);
    r.label = "hunt: cosine similarity to the mean of " + count_of(pos.size(), "positive");
    r.ranked_list = true;
    return r;
  }

  const int64_t want_bg = h.background > 0 ? h.background : std::max<int64_t>(1000, 20 * static_cast<int64_t>(pos.size()));
  const std::vector<int64_t> bg = background_rows(store, space, want_bg, used, h.seed);
  if (neg.empty() && bg.empty())
    throw InvalidArgument("space '" + space + "' holds no object besides the positives: nothing to contrast them with");
  std::vector<float> x;
  std::vector<uint8_t> y;
  for (const ObjectVector& o : pos) {
    x.insert(x.end(), o.vector.begin(), o.vector.end());
    y.push_back(1);
  }
  for (const ObjectVector& o : neg) {
    x.insert(x.end(), o.vector.begin(), o.vector.end());
    y.push_back(0);
  }
  const std::vector<float> bgv = store.vectors_at(space, bg);
  x.insert(x.end(), bgv.begin(), bgv.end());
  y.resize(y.size() + bg.size(), 0);
  // Balanced classes: a handful of positives weigh as much as the background.
  const double n_neg = static_cast<double>(neg.size() + bg.size());
  std::vector<double> weight;
  for (uint8_t label : y) weight.push_back(label ? 0.5 / static_cast<double>(pos.size()) : 0.5 / n_neg);
  const LogisticModel m = fit_logistic(x.data(), static_cast<int64_t>(y.size()), dim, y, weight, h.l2);

  // Ranking by w.x is ranking by the probability; the scan needs no normalised query.
  LikeQuery q = h.search;
  q.search.exact = true;
  std::vector<float> w(m.w.begin(), m.w.end());
  LikeResult r = search_with_vector(store, space, w, used, q);
  for (Neighbor& n : r.neighbors) n.score = static_cast<float>(1.0 / (1.0 + std::exp(-(n.score + m.b))));
  r.label = "hunt: logistic regression on " + count_of(pos.size(), "positive") + " against " +
            (neg.empty() ? "" : count_of(neg.size(), "negative") + " and ") + std::to_string(bg.size()) +
            " random background objects";
  r.method = "classifier probability, " + r.method;
  r.ranked_list = true;
  return r;
}

LikeResult find_outliers(const Store& store, const OutlierQuery& q) {
  if (q.neighbours < 1) throw InvalidArgument("--neighbours must be at least 1");
  if (q.search.k < 1) throw InvalidArgument("--k must be at least 1, got " + std::to_string(q.search.k));
  std::string space = q.search.space;
  if (space.empty()) {
    const auto spaces = store.spaces();
    if (spaces.size() != 1) throw InvalidArgument("the store has several spaces: choose one with --space");
    space = spaces.front().name;
  }
  space = store.resolve_space_name(space);
  const SpaceInfo info = store.space(space);
  if (info.count <= q.neighbours)
    throw InvalidArgument("space '" + space + "' holds " + std::to_string(info.count) + " vectors: too few for --neighbours " +
                          std::to_string(q.neighbours));
  const auto subset = filtered_vector_rows(store, space, q.search.filter);
  std::vector<int64_t> scored;
  if (subset) {
    scored = *subset;
  } else {
    scored.resize(static_cast<size_t>(info.count));
    for (int64_t i = 0; i < info.count; ++i) scored[i] = i;
  }
  // Every object queries the whole space (density is relative to all objects),
  // in blocks so the scan batches through BLAS.
  const size_t kBlock = 1024;
  std::vector<std::pair<float, int64_t>> isolation;  // (1 - cos to n-th neighbour, vrow)
  Progress progress("outliers", static_cast<int64_t>(scored.size()), q.progress);
  for (size_t b = 0; b < scored.size(); b += kBlock) {
    const std::vector<int64_t> block(scored.begin() + b, scored.begin() + std::min(scored.size(), b + kBlock));
    const std::vector<float> queries = store.vectors_at(space, block);
    const auto hits = store.search(space, queries.data(), static_cast<int64_t>(block.size()), q.neighbours + 1,
                                   nullptr, q.search.search);
    for (size_t i = 0; i < block.size(); ++i) {
      int64_t seen = 0;
      for (const Hit& hit : hits[i]) {
        if (hit.id == block[i]) continue;
        if (++seen == q.neighbours) {
          isolation.emplace_back(1.0f - hit.score, block[i]);
          break;
        }
      }
    }
    progress.add(static_cast<int64_t>(block.size()));
  }
  progress.finish();
  const size_t keep = std::min(isolation.size(), static_cast<size_t>(q.search.k));
  std::partial_sort(isolation.begin(), isolation.begin() + keep, isolation.end(),
                    [](const auto& a, const auto& b) { return a.first != b.first ? a.first > b.first : a.second < b.second; });
  isolation.resize(keep);
  std::vector<int64_t> vrows;
  for (const auto& e : isolation) vrows.push_back(e.second);
  const std::vector<CatalogRow> rows = store.rows(store.rows_of_vectors(space, vrows));
  LikeResult r;
  r.space = space;
  r.requested_k = q.search.k;
  r.label = "outliers: 1 - cosine similarity to nearest neighbour number " + std::to_string(q.neighbours);
  r.method = store.search_method(space, false, q.search.search) + ", every object as a query";
  r.ranked_list = true;
  for (size_t i = 0; i < rows.size(); ++i) r.neighbors.push_back({static_cast<int64_t>(i + 1), rows[i], isolation[i].first});
  return r;
}

}  // namespace mmu
