#include "mmu/query.h"

#include <algorithm>

#include "flat_index.h"
#include "mmu/error.h"

namespace mmu {

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

CatalogRow resolve_object(const Store& store, const LikeQuery& q) {
  std::vector<CatalogRow> rows = store.find_by_id(q.object_id);
  if (rows.empty())
    throw NotFound("object_id '" + q.object_id + "' is not in store '" + store.path() + "' (" +
                   std::to_string(store.num_objects()) + " objects in surveys: " + join(store.surveys()) + ")");
  if (!q.survey.empty()) {
    std::vector<CatalogRow> kept;
    for (const auto& r : rows)
      if (r.survey == q.survey || r.survey + "/" + r.subset == q.survey) kept.push_back(r);
    if (kept.empty()) {
      std::vector<std::string> where;
      for (const auto& r : rows) where.push_back(r.survey);
      throw NotFound("object_id '" + q.object_id + "' is not in survey '" + q.survey + "' (it is in: " + join(where) +
                     ")");
    }
    rows = kept;
  }
  if (rows.size() > 1) {
    std::vector<std::string> where;
    for (const auto& r : rows) where.push_back(r.survey);
    throw InvalidArgument("object_id '" + q.object_id + "' is in " + std::to_string(rows.size()) +
                          " surveys (" + join(where) + "): choose one with --survey");
  }
  return rows.front();
}

// The space to search and the row whose vector is the query: the object's own,
// or, when it has none in the wanted space, that of a cross-matched object
// (an image for a spectrum's id, say).
std::pair<std::string, int64_t> resolve_space(const Store& store, const CatalogRow& obj, const std::string& asked) {
  const std::string wanted = asked.empty() ? asked : store.resolve_space_name(asked);
  std::vector<std::string> spaces = store.spaces_of_row(obj.row);
  if (!wanted.empty() && std::find(spaces.begin(), spaces.end(), wanted) == spaces.end()) {
    for (int64_t linked : store.linked_rows(obj.row)) {
      const auto other = store.spaces_of_row(linked);
      if (std::find(other.begin(), other.end(), wanted) != other.end()) return {wanted, linked};
    }
  }
  if (spaces.empty())
    throw NotFound("object '" + obj.object_id + "' (" + obj.survey +
                   ") has no embedding: its file holds no modality this version can embed (image, spectrum, light curve, XP)");
  if (!wanted.empty()) {
    if (std::find(spaces.begin(), spaces.end(), wanted) == spaces.end()) {
      store.space(wanted);  // throws when the space does not exist at all
      throw NotFound("object '" + obj.object_id + "' has no vector in space '" + wanted + "' (it has: " +
                     join(spaces) + ")");
    }
    return {wanted, obj.row};
  }
  if (spaces.size() > 1)
    throw InvalidArgument("object '" + obj.object_id + "' has vectors in " + join(spaces) +
                          ": choose one with --space");
  return {spaces.front(), obj.row};
}

}  // namespace

LikeResult search_like(const Store& store, const LikeQuery& q) {
  if (q.k <= 0) throw InvalidArgument("--k must be at least 1, got " + std::to_string(q.k));
  LikeResult res;
  res.requested_k = q.k;
  res.query = resolve_object(store, q);
  const auto [space, vector_row] = resolve_space(store, res.query, q.space);
  res.space = space;
  const SpaceInfo info = store.space(res.space);
  const std::vector<float> qv = store.vector_of(res.space, vector_row);
  if (vector_row != res.query.row) res.via = store.rows({vector_row}).at(0);
  std::vector<Hit> hits;
  int64_t candidates = info.count;
  if (q.in_surveys.empty()) {
    // Exact, over the memory-mapped vectors (index.faiss is for approximate
    // indexes; reloading it per query cost more than the search). Two extra so
    // the query and its linked partner can be dropped.
    for (const auto& [row, score] : store.nearest(res.space, qv, std::min(q.k + 2, info.count))) hits.push_back({row, score});
  } else {
    const auto allowed = store.space_rows_in(res.space, q.in_surveys);
    if (allowed.empty())
      throw NotFound("no object of survey(s) " + join(q.in_surveys) + " has a vector in space '" + res.space + "'");
    std::vector<int64_t> vrows;
    for (const auto& vr : allowed) vrows.push_back(vr.first);
    const std::vector<float> sc = store.scores(res.space, qv, vrows);
    for (size_t i = 0; i < allowed.size(); ++i) hits.push_back({allowed[i].second, sc[i]});
    const size_t keep = std::min(hits.size(), static_cast<size_t>(q.k + 2));
    std::partial_sort(hits.begin(), hits.begin() + keep, hits.end(), [](const Hit& a, const Hit& b) {
      return a.score != b.score ? a.score > b.score : a.id < b.id;
    });
    hits.resize(keep);
    candidates = static_cast<int64_t>(allowed.size());
  }
  std::vector<int64_t> ids;
  std::vector<float> scores;
  for (const Hit& h : hits) {
    if (h.id == res.query.row || h.id == vector_row) continue;
    if (static_cast<int64_t>(ids.size()) == q.k) break;
    ids.push_back(h.id);
    scores.push_back(h.score);
  }
  const std::vector<CatalogRow> rows = store.rows(ids);
  for (size_t i = 0; i < rows.size(); ++i) res.neighbors.push_back({static_cast<int64_t>(i + 1), rows[i], scores[i]});
  if (static_cast<int64_t>(res.neighbors.size()) < q.k)
    res.note = std::string(q.in_surveys.empty() ? "space '" + res.space + "' holds " : "the surveys asked for hold ") +
               std::to_string(candidates) + " objects, so only " +
               std::to_string(res.neighbors.size()) + " neighbours exist (asked for " + std::to_string(q.k) + ")";
  return res;
}

}  // namespace mmu
