#include "mmu/query.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "mmu/error.h"
#include "mmu/sky.h"
#include "mmu/text.h"
#include "store/layout.h"

namespace mmu {

using text::format_double;

namespace {

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

CatalogRow resolve_object(const Store& store, const std::string& object_id, const std::string& survey) {
  std::vector<CatalogRow> rows = store.find_by_id(object_id);
  if (rows.empty())
    throw NotFound("object_id '" + object_id + "' is not in store '" + store.path() + "' (" +
                   std::to_string(store.num_objects()) + " objects in surveys: " + join(store.surveys()) + ")");
  if (!survey.empty()) {
    std::vector<CatalogRow> kept;
    for (const auto& r : rows)
      if (r.survey == survey || r.survey + "/" + r.subset == survey) kept.push_back(r);
    if (kept.empty()) {
      std::vector<std::string> where;
      for (const auto& r : rows) where.push_back(r.survey);
      throw NotFound("object_id '" + object_id + "' is not in survey '" + survey + "' (it is in: " + join(where) + ")");
    }
    rows = kept;
  }
  if (rows.size() > 1) {
    std::vector<std::string> where;
    for (const auto& r : rows) where.push_back(r.survey);
    throw InvalidArgument("object_id '" + object_id + "' is in " + std::to_string(rows.size()) + " surveys (" +
                          join(where) + "): choose one with --survey");
  }
  return rows.front();
}

// The nearest catalogued object to a position (of `survey` when given).
CatalogRow resolve_position(const Store& store, const SkyCone& near, const std::string& survey, double* sep_arcsec) {
  if (!valid_sky_position(near.ra, near.dec) || !(near.radius_deg > 0))
    throw InvalidArgument("--near needs RA,DEC in degrees (0..360, -90..90) and a positive --radius");
  for (const auto& [row, sep] : store.objects_in_cone(near.ra, near.dec, near.radius_deg)) {
    if (!survey.empty() && row.survey != survey && row.survey + "/" + row.subset != survey) continue;
    *sep_arcsec = sep * 3600.0;
    return row;
  }
  throw NotFound("no catalogued object" + (survey.empty() ? "" : " of survey '" + survey + "'") + " within " +
                 format_double("%g", near.radius_deg * 3600.0) + " arcsec of ra " + format_double("%.6f", near.ra) + ", dec " +
                 format_double("%.6f", near.dec) + " (widen it with --radius)");
}

// The space to search and the row whose vector is the query: the object's own,
// or, when it has none in the wanted space, that of a cross-matched object
// (an image for a spectrum's id, say). Without `asked`, an object with vectors
// in several spaces is searched in its modality's default space
// (Store::default_space), and *by_default is set. A catalog row comes from one
// file, which holds one modality, so its own spaces share that modality; should
// they not, the choice is left to --space.
std::pair<std::string, int64_t> resolve_space(const Store& store, const CatalogRow& obj, const std::string& asked,
                                              bool* by_default = nullptr, std::string* note = nullptr) {
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
  if (spaces.size() > 1) {
    std::set<std::string> modalities;
    for (const std::string& sp : spaces) modalities.insert(store.space(sp).modality);
    const std::string chosen = modalities.size() == 1 ? store.default_space(*modalities.begin()) : "";
    if (chosen.empty() || std::find(spaces.begin(), spaces.end(), chosen) == spaces.end())
      throw InvalidArgument("object '" + obj.object_id + "' has vectors in " + join(spaces) +
                            ": choose one with --space");
    if (by_default) *by_default = true;
    return {chosen, obj.row};
  }
  // Its only space, which need not be its modality's default (an R,G,B image
  // has image-rgb, not image): the output says so.
  const std::string modality = store.space(spaces.front()).modality;
  const std::string fallback = store.default_space(modality);
  if (note && fallback != spaces.front())
    *note = "object '" + obj.object_id + "' has no vector in the default " + modality + " space " + fallback +
            ", only in " + spaces.front();
  return {spaces.front(), obj.row};
}

// The space a bare vector belongs to: the asked one, or the only one of its dimension.
std::string space_for_vector(const Store& store, const std::vector<float>& v, const std::string& asked) {
  const int64_t dim = static_cast<int64_t>(v.size());
  if (!asked.empty()) {
    const SpaceInfo info = store.space(store.resolve_space_name(asked));
    if (info.dim != dim)
      throw InvalidArgument("the query vector has " + std::to_string(dim) + " values but space '" + info.name +
                            "' has dimension " + std::to_string(info.dim));
    return info.name;
  }
  std::vector<std::string> fits;
  for (const SpaceInfo& s : store.spaces())
    if (s.dim == dim) fits.push_back(s.name);
  if (fits.empty())
    throw InvalidArgument("no space of the store has dimension " + std::to_string(dim) + " (the query vector's)");
  if (fits.size() > 1) throw InvalidArgument("spaces " + join(fits) + " all have dimension " + std::to_string(dim) + ": choose one with --space");
  return fits.front();
}

// A query resolved to one normalised vector in one space.
struct Prepared {
  LikeResult result;
  std::vector<float> vector;
  std::vector<int64_t> exclude;  // catalog rows never returned (ascending)
  std::string modalities;        // " (image -> spectrum, ...)" for a cross-modal search
};

// The shared-space id a model space's card declares ("" for the baseline and
// for models trained alone). A model space's fit.bin is its model card.
std::string shared_space_of(const Store& store, const SpaceInfo& s) {
  if (s.model == "baseline-pca") return "";
  const std::string path = layout::fit_file(store.space_dir(s.name));
  std::ifstream in(path);
  const nlohmann::json card = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (!card.is_object() || !card.contains("shared_space") || !card["shared_space"].is_object()) return "";
  return card["shared_space"].value("id", "");
}

// The towers of one trained shared space, by modality.
struct SharedSpace {
  std::string id;
  std::map<std::string, std::string> tower;  // modality -> space name
};

SharedSpace choose_shared_space(const Store& store, const LikeQuery& q) {
  std::map<std::string, SharedSpace> by_id;
  for (const SpaceInfo& s : store.spaces()) {
    const std::string id = shared_space_of(store, s);
    if (id.empty()) continue;
    by_id[id].id = id;
    by_id[id].tower[s.modality] = s.name;
  }
  if (!q.space.empty()) {
    const SpaceInfo asked = store.space(store.resolve_space_name(q.space));
    const std::string id = shared_space_of(store, asked);
    if (id.empty())
      throw InvalidArgument("--space " + asked.name + ": its model card declares no shared space; --from/--to search "
                            "only across towers trained together (mmu-index train)");
    return by_id.at(id);
  }
  if (by_id.empty())
    throw InvalidArgument("--from/--to: no space of store '" + store.path() + "' comes from towers trained into one "
                          "shared space (mmu-index train, then build --model DIR/image --model DIR/spectrum)");
  if (by_id.size() > 1) {
    std::vector<std::string> ids;
    for (const auto& [id, s] : by_id) ids.push_back(id);
    throw InvalidArgument("--from/--to: the store has several shared spaces (" + join(ids) +
                          "): choose one by naming a tower with --space");
  }
  return by_id.begin()->second;
}

std::string tower_of(const SharedSpace& shared, const std::string& modality, const std::string& flag) {
  const auto it = shared.tower.find(modality);
  if (it == shared.tower.end())
    throw InvalidArgument(flag + " " + modality + ": shared space '" + shared.id + "' has no " + modality +
                          " tower in this store (build it with --model for both towers)");
  return it->second;
}

// Adds the vectors of `objects` into *sum and marks the rows used as never to be returned.
void accumulate(const std::vector<ObjectVector>& objects, const Store& store, std::vector<double>* sum, Prepared* p) {
  for (const ObjectVector& o : objects) {
    if (sum->empty()) sum->assign(o.vector.size(), 0.0);
    for (size_t i = 0; i < o.vector.size(); ++i) (*sum)[i] += o.vector[i];
    p->exclude.push_back(o.object.row);
    if (o.owner != o.object.row) {
      p->exclude.push_back(o.owner);
      if (p->result.via.row < 0) p->result.via = store.rows({o.owner}).at(0);
    }
  }
}

// A NaN or infinite stored vector (a damaged store, a model that produced
// NaN) is named here; summed into the query it would read as "the query vector is zero".
std::vector<float> finite_vector_of(const Store& store, const std::string& space, const CatalogRow& obj, int64_t owner) {
  std::vector<float> v = store.vector_of(space, owner);
  for (float x : v)
    if (!std::isfinite(x))
      throw FormatError("the stored vector of object '" + obj.object_id + "' (" + obj.survey + ")" +
                        (owner != obj.row ? " (its linked partner's, row " + std::to_string(owner) + ")" : "") +
                        " in space '" + space + "' of store '" + store.path() + "' is not finite: rebuild the store");
  return v;
}

std::vector<ObjectVector> vectors_of_rows(const Store& store, const std::vector<CatalogRow>& objects, std::string* space,
                                          bool* by_default = nullptr, std::string* note = nullptr) {
  std::vector<ObjectVector> out;
  for (const CatalogRow& obj : objects) {
    const auto [sp, owner] = resolve_space(store, obj, *space, by_default, note);
    *space = sp;  // resolved: "name" may have become "name@version"
    out.push_back({obj, owner, finite_vector_of(store, sp, obj, owner)});
  }
  return out;
}

// A cross-modal query's towers, resolved once: finding them reads every
// space's model card, not to be repeated per object list or per batch query.
struct CrossModal {
  std::string to_space;
  std::vector<std::string> from_spaces;
  std::string label;  // " (image -> spectrum in shared space ID)", for the method line
};

CrossModal resolve_cross_modal(const Store& store, const LikeQuery& q) {
  if (q.from != "image" && q.from != "spectrum" && q.from != "both")
    throw InvalidArgument("--from must be image, spectrum or both, got '" + q.from + "'");
  if (q.to != "image" && q.to != "spectrum") throw InvalidArgument("--to must be image or spectrum, got '" + q.to + "'");
  const SharedSpace shared = choose_shared_space(store, q);
  CrossModal cm;
  cm.to_space = tower_of(shared, q.to, "--to");
  for (const char* m : {"image", "spectrum"})
    if (q.from == m || q.from == "both") cm.from_spaces.push_back(tower_of(shared, m, "--from"));
  cm.label = " (" + q.from + " -> " + q.to + " in shared space " + shared.id + ")";
  return cm;
}

// Each object's vector in the shared space from its --from tower(s) (own or a
// linked partner's); "both" averages the image and spectrum vectors (each
// L2-normalised), renormalised.
std::vector<ObjectVector> cross_modal_vectors(const Store& store, const std::vector<CatalogRow>& objects,
                                              const CrossModal& cm) {
  const std::vector<std::string>& from_spaces = cm.from_spaces;
  std::vector<ObjectVector> out;
  for (const CatalogRow& obj : objects) {
    ObjectVector sum{obj, obj.row, {}};
    for (const std::string& from_space : from_spaces) {
      const auto [sp, owner] = resolve_space(store, obj, from_space);
      const std::vector<float> v = finite_vector_of(store, sp, obj, owner);
      if (sum.vector.empty()) sum.vector.assign(v.size(), 0.f);
      for (size_t i = 0; i < v.size(); ++i) sum.vector[i] += v[i] / static_cast<float>(from_spaces.size());
      if (owner != obj.row) sum.owner = owner;
    }
    double norm = 0;
    for (float x : sum.vector) norm += static_cast<double>(x) * x;
    for (float& x : sum.vector) x = static_cast<float>(x / std::sqrt(std::max(norm, 1e-30)));
    out.push_back(std::move(sum));
  }
  return out;
}

// resolved: the query's CrossModal when the caller has it already (a batch).
Prepared prepare(const Store& store, const LikeQuery& q, const CrossModal* resolved = nullptr) {
  if (q.k <= 0) throw InvalidArgument("--k must be at least 1, got " + std::to_string(q.k));
  check_search_settings(q);
  const int kinds = !q.like.empty() + q.near.has_value() + !q.vector.empty();
  if (kinds != 1) throw InvalidArgument("give exactly one of --like, --near or --vector");
  if (!(q.unlike_weight >= 0)) throw InvalidArgument("--unlike-weight must be >= 0");
  const bool cross_modal = !q.from.empty() || !q.to.empty();
  if (cross_modal && (q.from.empty() || q.to.empty())) throw InvalidArgument("--from and --to go together");
  if (cross_modal && !q.vector.empty()) throw InvalidArgument("--from/--to take objects (--like, --near), not --vector");
  Prepared p;
  LikeResult& r = p.result;
  r.requested_k = q.k;
  std::string space;
  if (!q.vector.empty()) {
    space = space_for_vector(store, q.vector, q.space);
    r.label = q.vector_label.empty() ? "the query vector" : q.vector_label;
  } else {
    if (q.near) {
      r.positives.push_back(resolve_position(store, *q.near, q.survey, &r.near_sep_arcsec));
      r.label = "ra " + format_double("%.6f", q.near->ra) + ", dec " + format_double("%.6f", q.near->dec);
    } else {
      for (const std::string& id : q.like) r.positives.push_back(resolve_object(store, id, q.survey));
      r.label = q.like.size() == 1 ? q.like.front() : join(q.like);
    }
    r.query = r.positives.front();
    space = q.space;
  }
  for (const std::string& id : q.unlike) r.negatives.push_back(resolve_object(store, id, q.survey));

  std::vector<double> pos, neg;
  if (!q.vector.empty()) {
    pos.assign(q.vector.begin(), q.vector.end());
    for (float x : q.vector)
      if (!std::isfinite(x)) throw InvalidArgument("the query vector has a non-finite value");
  } else if (cross_modal) {
    const CrossModal cm = resolved ? *resolved : resolve_cross_modal(store, q);
    space = cm.to_space;
    p.modalities = cm.label;
    accumulate(cross_modal_vectors(store, r.positives, cm), store, &pos, &p);
    if (!r.negatives.empty()) accumulate(cross_modal_vectors(store, r.negatives, cm), store, &neg, &p);
  } else {
    accumulate(vectors_of_rows(store, r.positives, &space, &r.default_space, &r.space_note), store, &pos, &p);
    if (!r.negatives.empty()) accumulate(vectors_of_rows(store, r.negatives, &space), store, &neg, &p);
  }
  r.space = space;
  const double n_pos = q.vector.empty() ? static_cast<double>(r.positives.size()) : 1.0;
  double norm = 0;
  p.vector.resize(pos.size());
  for (size_t i = 0; i < pos.size(); ++i) {
    double x = pos[i] / n_pos;
    if (!neg.empty()) x -= q.unlike_weight * neg[i] / static_cast<double>(r.negatives.size());
    p.vector[i] = static_cast<float>(x);
    norm += x * x;
  }
  if (!(norm > 1e-20)) throw InvalidArgument("the query vector is zero (do the --unlike objects cancel the --like ones?)");
  for (float& x : p.vector) x = static_cast<float>(x / std::sqrt(norm));
  std::sort(p.exclude.begin(), p.exclude.end());
  return p;
}

struct Candidates {
  std::optional<std::vector<int64_t>> subset;  // vector rows allowed by the filter
  int64_t count = 0;
};

Candidates candidates_for(const Store& store, const std::string& space, const RowFilter& f) {
  Candidates c;
  c.subset = filtered_vector_rows(store, space, f);
  c.count = c.subset ? static_cast<int64_t>(c.subset->size()) : store.space(space).count;
  return c;
}

std::string no_candidates(const std::string& space, const RowFilter& f) {
  std::string why;
  if (!f.surveys.empty()) why += " --in " + join(f.surveys);
  if (!f.cells.empty()) why += " --cells";
  if (f.cone) why += " --cone";
  if (!f.where.empty()) why += " --where \"" + f.where + "\"";
  return "no object with a vector in space '" + space + "' passes the filters (" + why.substr(1) + ")";
}

// Turns hits into neighbours, dropping query objects and sky duplicates.
// Returns false when fewer than k survived and asking for more hits could help.
bool finish(const Store& store, const LikeQuery& q, const std::vector<Hit>& hits, int64_t fetched,
            const Candidates& c, Prepared* p) {
  LikeResult& r = p->result;
  r.neighbors.clear();
  std::vector<int64_t> vrows;
  for (const Hit& h : hits) vrows.push_back(h.id);
  const std::vector<int64_t> rows = store.rows_of_vectors(r.space, vrows);
  std::vector<int64_t> keep_rows;
  std::vector<float> keep_scores;
  for (size_t i = 0; i < rows.size(); ++i) {
    if (std::binary_search(p->exclude.begin(), p->exclude.end(), rows[i])) continue;
    keep_rows.push_back(rows[i]);
    keep_scores.push_back(hits[i].score);
  }
  const std::vector<CatalogRow> objects = store.rows(keep_rows);
  std::vector<const CatalogRow*> kept_sky;  // for de-duplication on the sky
  for (const CatalogRow& pos : r.positives) kept_sky.push_back(&pos);
  for (size_t i = 0; i < objects.size() && static_cast<int64_t>(r.neighbors.size()) < q.k; ++i) {
    if (q.dedup_arcsec > 0) {
      bool dup = false;
      for (const CatalogRow* o : kept_sky)
        if (angular_separation_deg(o->ra, o->dec, objects[i].ra, objects[i].dec) * 3600.0 < q.dedup_arcsec) dup = true;
      if (dup) continue;
    }
    r.neighbors.push_back({static_cast<int64_t>(r.neighbors.size() + 1), objects[i], keep_scores[i]});
    kept_sky.push_back(&objects[i]);
  }
  const bool complete = static_cast<int64_t>(r.neighbors.size()) == q.k;
  const bool exhausted = fetched >= c.count || static_cast<int64_t>(hits.size()) < fetched;
  if (!complete && !exhausted) return false;
  if (!complete)
    r.note = std::string(c.subset ? "the filters leave " : "space '" + r.space + "' holds ") + std::to_string(c.count) +
             " objects" + (q.dedup_arcsec > 0 ? " (before sky de-duplication)" : "") + ", so only " +
             std::to_string(r.neighbors.size()) + " neighbours exist (asked for " + std::to_string(q.k) + ")";
  return true;
}

int64_t first_fetch(const LikeQuery& q, const Prepared& p, const Candidates& c) {
  const int64_t extra = static_cast<int64_t>(p.exclude.size()) + (q.dedup_arcsec > 0 ? q.k : 0);
  return std::max<int64_t>(1, std::min(c.count, q.k + extra));
}

// Searches until k neighbours survive or the candidates are exhausted.
void run_one(const Store& store, const LikeQuery& q, const Candidates& c, int64_t fetch, Prepared* p) {
  const std::vector<int64_t>* subset = c.subset ? &*c.subset : nullptr;
  while (true) {
    const auto hits = store.search(p->result.space, p->vector.data(), 1, fetch, subset, q.search)[0];
    if (finish(store, q, hits, fetch, c, p)) return;
    fetch = std::min(c.count, fetch * 4);
  }
}

LikeResult run_prepared(const Store& store, const LikeQuery& q, Prepared p) {
  const Candidates c = candidates_for(store, p.result.space, q.filter);
  if (c.count == 0) throw NotFound(no_candidates(p.result.space, q.filter));
  p.result.method = store.search_method(p.result.space, c.subset.has_value(), q.search) + p.modalities;
  run_one(store, q, c, first_fetch(q, p, c), &p);
  return std::move(p.result);
}

}  // namespace

std::optional<std::vector<int64_t>> filtered_vector_rows(const Store& store, const std::string& space,
                                                         const RowFilter& f) {
  if (!f.active()) return std::nullopt;
  return store.filtered_vector_rows(space, f);
}

std::vector<ObjectVector> object_vectors(const Store& store, const std::vector<std::string>& ids,
                                         const std::string& survey, std::string* space) {
  std::vector<CatalogRow> rows;
  for (const std::string& id : ids) rows.push_back(resolve_object(store, id, survey));
  return vectors_of_rows(store, rows, space);
}

LikeResult search_with_vector(const Store& store, const std::string& space, std::vector<float> v,
                              std::vector<int64_t> exclude, const LikeQuery& q) {
  if (q.k <= 0) throw InvalidArgument("--k must be at least 1, got " + std::to_string(q.k));
  check_search_settings(q);
  Prepared p;
  p.result.space = store.resolve_space_name(space);
  p.result.requested_k = q.k;
  p.vector = std::move(v);
  p.exclude = std::move(exclude);
  std::sort(p.exclude.begin(), p.exclude.end());
  return run_prepared(store, q, std::move(p));
}

void check_search_settings(const LikeQuery& q) {
  constexpr int64_t kMaxSetting = int64_t{1} << 20;
  if (!(q.dedup_arcsec >= 0) || !std::isfinite(q.dedup_arcsec))
    throw InvalidArgument("--dedup (field 'dedup_arcsec') must be a finite number >= 0 arcsec, got " +
                          format_double("%g", q.dedup_arcsec));
  if (!(q.unlike_weight >= 0) || !std::isfinite(q.unlike_weight))
    throw InvalidArgument("--unlike-weight (field 'unlike_weight') must be a finite number >= 0, got " +
                          format_double("%g", q.unlike_weight));
  const auto in_range = [&](const char* flag, const char* field, int64_t v) {
    if (v < 0 || v > kMaxSetting)
      throw InvalidArgument(std::string(flag) + " (field '" + field + "') must be in 0.." + std::to_string(kMaxSetting) +
                            " (0 = the index's own setting), got " + std::to_string(v));
  };
  in_range("--nprobe", "nprobe", q.search.nprobe);
  in_range("--ef-search", "ef_search", q.search.ef_search);
}

LikeResult search_like(const Store& store, const LikeQuery& q) { return run_prepared(store, q, prepare(store, q)); }

ResolvedQuery resolve_query(const Store& store, const LikeQuery& q) {
  Prepared p = prepare(store, q);
  return {std::move(p.result), std::move(p.vector), std::move(p.exclude), std::move(p.modalities)};
}

std::vector<LikeResult> search_like_batch(const Store& store, const LikeQuery& common,
                                          const std::vector<std::string>& ids) {
  std::vector<Prepared> prepared(ids.size());
  std::map<std::string, std::vector<size_t>> by_space;
  // Cross-modal towers found once for the batch; if that fails, each query
  // reports the failure as a lone query would.
  std::optional<CrossModal> cross_modal;
  if (!common.from.empty() && !common.to.empty()) {
    try {
      cross_modal = resolve_cross_modal(store, common);
    } catch (const Error&) {  // left to each query's prepare()
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    LikeQuery q = common;
    q.like = {ids[i]};
    try {
      prepared[i] = prepare(store, q, cross_modal ? &*cross_modal : nullptr);
      by_space[prepared[i].result.space].push_back(i);
    } catch (const Error& e) {
      prepared[i].result.label = ids[i];
      prepared[i].result.error = e.what();
    }
  }
  // Queries per scan: each block re-reads every vector, so blocks are large
  // (sgemm over 1024 queries); the per-query heaps stay small.
  const size_t kBatch = 1024;
  for (const auto& [space, members] : by_space) {
    const Candidates c = candidates_for(store, space, common.filter);
    if (c.count == 0) {
      for (size_t i : members) prepared[i].result.error = no_candidates(space, common.filter);
      continue;
    }
    const std::string method = store.search_method(space, c.subset.has_value(), common.search);
    for (size_t b = 0; b < members.size(); b += kBatch) {
      const size_t nb = std::min(kBatch, members.size() - b);
      std::vector<float> queries;
      int64_t fetch = 1;
      for (size_t j = 0; j < nb; ++j) {
        const Prepared& p = prepared[members[b + j]];
        queries.insert(queries.end(), p.vector.begin(), p.vector.end());
        fetch = std::max(fetch, first_fetch(common, p, c));
      }
      const auto hits = store.search(space, queries.data(), static_cast<int64_t>(nb), fetch,
                                     c.subset ? &*c.subset : nullptr, common.search);
      for (size_t j = 0; j < nb; ++j) {
        Prepared& p = prepared[members[b + j]];
        p.result.method = method + p.modalities;
        if (!finish(store, common, hits[j], fetch, c, &p)) run_one(store, common, c, std::min(c.count, fetch * 4), &p);
      }
    }
  }
  std::vector<LikeResult> out;
  for (Prepared& p : prepared) out.push_back(std::move(p.result));
  return out;
}

}  // namespace mmu
