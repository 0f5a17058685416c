#include "mmu/store_set.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <tuple>

#include "base/sha256.h"
#include "mmu/error.h"
#include "mmu/sky.h"
#include "store/layout.h"

namespace mmu {

namespace fs = std::filesystem;

namespace {

std::string quoted_list(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "'" : ", '") + s + "'";
  return out;
}

bool has_space(const Store& store, const std::string& name) {
  for (const SpaceInfo& s : store.spaces())
    if (s.name == name) return true;
  return false;
}

// What made a space's vectors: its fit.bin (the baseline PCA, or a model's
// card) as the build recorded its hash, else as it reads now.
std::string fit_sha256(const Store& store, const std::string& space) {
  for (const SpaceFileHash& h : store.space_file_hashes(space))
    if (h.file == layout::kFitFile) return h.sha256;
  return sha256_hex(store.read_fit(space));
}

// The first way two stores' versions of one space differ, or "".
std::string space_difference(const SpaceInfo& a, const std::string& fit_a, const SpaceInfo& b, const std::string& fit_b) {
  const auto differ = [](const char* what, const std::string& x, const std::string& y) {
    return std::string(what) + " " + x + " vs " + y;
  };
  if (a.modality != b.modality) return differ("modality", a.modality, b.modality);
  if (a.model != b.model) return differ("model", a.model, b.model);
  if (a.version != b.version) return differ("version", a.version, b.version);
  if (a.dim != b.dim) return differ("dimension", std::to_string(a.dim), std::to_string(b.dim));
  if (a.sha256 != b.sha256) return differ("model SHA-256", a.sha256, b.sha256);
  if (fit_a != fit_b) return differ("fit.bin SHA-256", fit_a, fit_b);
  return "";
}

bool in_survey(const CatalogRow& r, const std::string& survey) {
  return survey.empty() || r.survey == survey || r.survey + "/" + r.subset == survey;
}

// The store whose objects the query names: resolve_query runs there.
size_t home_store(const StoreSet& set, const LikeQuery& q) {
  if (!q.vector.empty()) {
    for (size_t i = 0; i < set.size(); ++i)
      for (const SpaceInfo& s : set.store(i).spaces())
        if (s.dim == static_cast<int64_t>(q.vector.size()) && (q.space.empty() || s.name == q.space ||
                                                               s.name.rfind(q.space + "@", 0) == 0))
          return i;
    return 0;  // resolve_query says why no space fits
  }
  if (q.near) {
    if (!valid_sky_position(q.near->ra, q.near->dec) || !(q.near->radius_deg > 0)) return 0;  // refused there
    std::optional<std::pair<double, size_t>> best;
    for (size_t i = 0; i < set.size(); ++i)
      for (const auto& [row, sep] : set.store(i).objects_in_cone(q.near->ra, q.near->dec, q.near->radius_deg)) {
        if (!in_survey(row, q.survey)) continue;
        if (!best || sep < best->first) best = std::make_pair(sep, i);  // a tie stays with the earlier store
        break;
      }
    return best ? best->second : 0;
  }
  std::optional<size_t> home;
  std::string home_id;
  std::vector<std::string> ids = q.like;
  ids.insert(ids.end(), q.unlike.begin(), q.unlike.end());
  for (const std::string& id : ids) {
    std::vector<size_t> holders;
    std::vector<std::string> surveys;
    for (size_t i = 0; i < set.size(); ++i)
      for (const CatalogRow& r : set.store(i).find_by_id(id))
        if (in_survey(r, q.survey)) {
          if (holders.empty() || holders.back() != i) holders.push_back(i);
          surveys.push_back(r.survey);
        }
    if (holders.empty()) {
      std::vector<std::string> paths;
      for (size_t i = 0; i < set.size(); ++i) paths.push_back(set.path(i));
      throw NotFound("object_id '" + id + "'" + (q.survey.empty() ? "" : " of survey '" + q.survey + "'") +
                     " is in none of the " + std::to_string(set.size()) + " stores (" + quoted_list(paths) + ")");
    }
    if (holders.size() > 1) {
      std::vector<std::string> where;
      for (size_t i : holders) where.push_back(set.path(i));
      const bool one_survey = std::set<std::string>(surveys.begin(), surveys.end()).size() == 1;
      if (one_survey || !q.survey.empty())
        throw InvalidArgument("object_id '" + id + "' is in stores " + quoted_list(where) +
                              ": the stores overlap, and a set must hold each object once (as the shards of one "
                              "build do); search them apart");
      throw InvalidArgument("object_id '" + id + "' is in " + std::to_string(surveys.size()) + " surveys (" +
                            quoted_list(surveys) + ", in stores " + quoted_list(where) + "): choose one with --survey");
    }
    if (home && *home != holders.front())
      throw InvalidArgument("the query's objects lie in different stores ('" + home_id + "' in '" + set.path(*home) +
                            "', '" + id + "' in '" + set.path(holders.front()) +
                            "'): a set of stores is searched with the objects of one store");
    home = holders.front();
    home_id = id;
  }
  return home.value_or(0);
}

// One candidate of the merged list.
struct SetHit {
  float score;
  size_t store;
  size_t pos;  // in its store's list
  int64_t row;
};

// The merged store's order: score, then the earlier store, then its own order (lower row).
// Exact scans report canonical scores (vector/canonical_dot.h): a row's score
// is the same float in its own store and in the merged one, so merging the
// stores' top-k lists gives the merged store's top-k, near ties and ties
// included. IVF/HNSW scores are FAISS's, from each store's own index: a set
// (and MPI ranks, which merge the same lists) answers as the set does, not as
// an index built over a merged store would.
bool merged_before(const SetHit& a, const SetHit& b) {
  if (a.score != b.score) return a.score > b.score;
  return std::tie(a.store, a.pos) < std::tie(b.store, b.pos);
}

std::string no_candidates(const std::string& space, const RowFilter& f, size_t n_stores) {
  std::string why;
  if (!f.surveys.empty()) {
    for (const auto& s : f.surveys) why += " --in " + s;
  }
  if (!f.cells.empty()) why += " --cells";
  if (f.cone) why += " --cone";
  if (!f.where.empty()) why += " --where \"" + f.where + "\"";
  if (why.empty()) return "no store of the " + std::to_string(n_stores) + " holds a vector in space '" + space + "'";
  return "no object with a vector in space '" + space + "' in any of the " + std::to_string(n_stores) +
         " stores passes the filters (" + why.substr(1) + ")";
}

// Merges the stores' scans into r's neighbours (exclusion, sky de-duplication,
// k). Only the part of the merged list that no unfetched candidate can precede
// is used: up to the last fetched hit of each store that has more. Returns
// false when that part holds fewer than k neighbours and a store has more.
bool finish_set(const StoreSet& set, const LikeQuery& q, size_t home, const std::vector<StoreScan>& scans,
                ResolvedQuery* rq) {
  LikeResult& r = rq->result;
  r.neighbors.clear();
  std::vector<SetHit> merged;
  std::optional<SetHit> frontier;  // the earliest last hit of a store with more
  bool all_exhausted = true;
  int64_t candidates = 0;
  for (size_t s = 0; s < scans.size(); ++s) {
    const StoreScan& sc = scans[s];
    candidates += sc.candidates;
    for (size_t i = 0; i < sc.hits.size(); ++i) merged.push_back({sc.hits[i].score, s, i, sc.hits[i].id});
    if (sc.exhausted) continue;
    all_exhausted = false;
    if (sc.hits.empty()) {  // nothing fetched, yet more there: nothing of the merged list is safe
      frontier = SetHit{std::numeric_limits<float>::infinity(), 0, 0, -1};
      continue;
    }
    const SetHit last{sc.hits.back().score, s, sc.hits.size() - 1, sc.hits.back().id};
    if (!frontier || merged_before(last, *frontier)) frontier = last;
  }
  std::sort(merged.begin(), merged.end(), merged_before);
  // The catalog rows of the candidates that can be kept, joined per store.
  std::vector<std::vector<int64_t>> wanted(set.size());
  std::vector<SetHit> kept;
  for (const SetHit& h : merged) {
    if (frontier && merged_before(*frontier, h)) break;
    if (h.store == home && std::binary_search(rq->exclude.begin(), rq->exclude.end(), h.row)) continue;
    kept.push_back(h);
    wanted[h.store].push_back(h.row);
  }
  std::vector<std::map<int64_t, CatalogRow>> joined(set.size());
  for (size_t s = 0; s < set.size(); ++s) {
    if (wanted[s].empty()) continue;
    const std::vector<CatalogRow> rows = set.store(s).rows(wanted[s]);
    for (const CatalogRow& c : rows) joined[s][c.row] = c;
  }
  std::vector<CatalogRow> sky = r.positives;  // for de-duplication on the sky
  for (const SetHit& h : kept) {
    if (static_cast<int64_t>(r.neighbors.size()) == q.k) break;
    const CatalogRow& obj = joined[h.store].at(h.row);
    if (q.dedup_arcsec > 0) {
      bool dup = false;
      for (const CatalogRow& o : sky)
        if (angular_separation_deg(o.ra, o.dec, obj.ra, obj.dec) * 3600.0 < q.dedup_arcsec) dup = true;
      if (dup) continue;
      sky.push_back(obj);
    }
    r.neighbors.push_back({static_cast<int64_t>(r.neighbors.size() + 1), obj, h.score});
  }
  const bool complete = static_cast<int64_t>(r.neighbors.size()) == q.k;
  if (!complete && !all_exhausted) return false;
  if (!complete)
    r.note = std::string(q.filter.active() ? "the filters leave " : "space '" + r.space + "' holds ") +
             std::to_string(candidates) + " objects in the " + std::to_string(set.size()) + " stores" +
             (q.dedup_arcsec > 0 ? " (before sky de-duplication)" : "") + ", so only " +
             std::to_string(r.neighbors.size()) + " neighbours exist (asked for " + std::to_string(q.k) + ")";
  return true;
}

int64_t first_fetch(const LikeQuery& q, const ResolvedQuery& rq) {
  return std::max<int64_t>(1, q.k + static_cast<int64_t>(rq.exclude.size()) + (q.dedup_arcsec > 0 ? q.k : 0));
}

// How the stores search `space`: one method, or each store's when they differ.
std::string set_method(const StoreSet& set, const std::string& space, const LikeQuery& q) {
  std::vector<std::string> methods;
  for (size_t i = 0; i < set.size(); ++i) {
    if (!has_space(set.store(i), space)) continue;
    const std::string m = set.store(i).search_method(space, q.filter.active(), q.search);
    if (std::find(methods.begin(), methods.end(), m) == methods.end()) methods.push_back(m);
  }
  std::string out;
  for (const auto& m : methods) out += (out.empty() ? "" : " / ") + m;
  return out + " over " + std::to_string(set.size()) + " stores";
}

bool no_candidate_anywhere(const std::vector<StoreScan>& scans) {
  for (const StoreScan& s : scans)
    if (s.candidates > 0) return false;
  return true;
}

// Scans again with 4x the candidates until k neighbours are safe or every store is exhausted.
void run_until_complete(const StoreSet& set, const LikeQuery& q, size_t home, const SetScanner& scan, int64_t fetch,
                        ResolvedQuery* rq) {
  while (true) {
    const std::vector<StoreScan> scans = scan(rq->result.space, rq->vector, 1, fetch).at(0);
    if (no_candidate_anywhere(scans)) throw NotFound(no_candidates(rq->result.space, q.filter, set.size()));
    if (finish_set(set, q, home, scans, rq)) return;
    fetch = fetch > (int64_t{1} << 40) ? fetch : fetch * 4;
  }
}

}  // namespace

std::vector<std::string> read_store_manifest(const std::string& path, const std::string& flag) {
  std::ifstream in(path);
  if (!in) throw NotFound("cannot read " + flag + " '" + path + "'");
  const fs::path dir = fs::path(path).parent_path();
  constexpr size_t kMaxStores = 100000;  // a wrong file (a binary) fails instead of filling memory
  std::vector<std::string> stores;
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.size() > 4096)
      throw InvalidArgument(flag + " '" + path + "' line " + std::to_string(line_no) + " is longer than 4096 bytes: not a list of stores");
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) line.pop_back();
    const size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#') continue;
    if (stores.size() == kMaxStores)
      throw InvalidArgument(flag + " '" + path + "' lists more than " + std::to_string(kMaxStores) + " stores");
    const fs::path p = line.substr(start);
    stores.push_back(p.is_absolute() || dir.empty() ? p.string() : (dir / p).string());
  }
  if (stores.empty()) throw InvalidArgument(flag + " '" + path + "' lists no stores");
  return stores;
}

std::vector<StoreScan> scan_store(const Store& store, const std::string& space, const float* queries, int64_t nq,
                                  int64_t fetch, const RowFilter& filter, const SearchOptions& opts) {
  std::vector<StoreScan> out(static_cast<size_t>(nq));
  if (!has_space(store, space)) return out;
  const std::optional<std::vector<int64_t>> subset = filtered_vector_rows(store, space, filter);
  const int64_t count = subset ? static_cast<int64_t>(subset->size()) : store.space(space).count;
  if (count == 0) return out;
  const int64_t k = std::min(fetch, count);
  const auto hits = store.search(space, queries, nq, k, subset ? &*subset : nullptr, opts);
  for (int64_t i = 0; i < nq; ++i) {
    std::vector<int64_t> vrows;
    for (const Hit& h : hits[i]) vrows.push_back(h.id);
    const std::vector<int64_t> rows = store.rows_of_vectors(space, vrows);
    StoreScan& s = out[i];
    s.candidates = count;
    s.exhausted = k >= count || static_cast<int64_t>(hits[i].size()) < k;
    for (size_t j = 0; j < rows.size(); ++j) s.hits.push_back({rows[j], hits[i][j].score});
  }
  return out;
}

StoreSet::StoreSet(const std::vector<std::string>& paths) : paths_(paths) {
  if (paths.empty()) throw InvalidArgument("a set of stores needs at least one --store");
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < paths.size(); ++i) {
    std::error_code ec;
    const std::string canonical = fs::weakly_canonical(paths[i], ec).string();
    const auto [it, fresh] = seen.emplace(ec ? paths[i] : canonical, i);
    if (!fresh)
      throw InvalidArgument("store '" + paths[i] + "' is given twice (as '" + paths[it->second] +
                            "'): its objects would come back twice");
    stores_.push_back(Store::open(paths[i]));
  }
  // An MMU file is known by dataset/subset/healpix=N/name wherever its root
  // lies: the same file under two roots (a cell built into two shards) is one.
  std::map<std::string, std::pair<size_t, std::string>> file_store;
  for (size_t i = 0; i < stores_.size(); ++i)
    for (const StoredFile& f : stores_[i]->files()) {
      const std::string key = f.file.dataset + "/" + f.file.subset + "/healpix=" + std::to_string(f.file.healpix) +
                              "/" + fs::path(f.file.path).filename().string();
      const auto [it, fresh] = file_store.emplace(key, std::make_pair(i, f.file.path));
      if (!fresh)
        throw InvalidArgument("stores '" + paths_[it->second.first] + "' and '" + paths_[i] + "' both hold MMU file " +
                              key + " ('" + it->second.second + "', '" + f.file.path + "'): the stores overlap and "
                              "its objects would come back twice; a set must hold each file once (as the shards of "
                              "one build do)");
    }
  struct First {
    size_t store;
    SpaceInfo info;
    std::string fit;
  };
  std::map<std::string, First> first;
  std::map<std::string, std::vector<size_t>> holders;
  for (size_t i = 0; i < stores_.size(); ++i)
    for (const SpaceInfo& s : stores_[i]->spaces()) {
      const std::string fit = fit_sha256(*stores_[i], s.name);
      holders[s.name].push_back(i);
      const auto it = first.find(s.name);
      if (it == first.end()) {
        first.emplace(s.name, First{i, s, fit});
        continue;
      }
      const std::string diff = space_difference(it->second.info, it->second.fit, s, fit);
      if (!diff.empty())
        throw InvalidArgument("space '" + s.name + "' differs between stores '" + paths_[it->second.store] + "' and '" +
                              paths_[i] + "' (" + diff + "): their vectors were made by different fits or models and "
                              "cannot be ranked together; build the shards with one fit (mmu-index fit, then build "
                              "--fit) or search the stores apart");
    }
  for (const auto& [name, in] : holders)
    if (in.size() < stores_.size())
      for (size_t i = 0; i < stores_.size(); ++i)
        if (std::find(in.begin(), in.end(), i) == in.end())
          warnings_.push_back("store '" + paths_[i] + "' has no space '" + name +
                              "' (another store of the set has): it adds nothing to searches of that space");
}

StoreSet::~StoreSet() = default;

SetScanner local_scanner(const StoreSet& set, const LikeQuery& q) {
  return [&set, filter = q.filter, opts = q.search](const std::string& space, const std::vector<float>& queries,
                                                    int64_t nq, int64_t fetch) {
    std::vector<std::vector<StoreScan>> out(static_cast<size_t>(nq), std::vector<StoreScan>(set.size()));
    for (size_t s = 0; s < set.size(); ++s) {
      std::vector<StoreScan> one = scan_store(set.store(s), space, queries.data(), nq, fetch, filter, opts);
      for (int64_t i = 0; i < nq; ++i) out[i][s] = std::move(one[i]);
    }
    return out;
  };
}

LikeResult search_like_set(const StoreSet& set, const LikeQuery& q, const SetScanner& scan) {
  const size_t home = home_store(set, q);
  ResolvedQuery rq = resolve_query(set.store(home), q);
  rq.result.method = set_method(set, rq.result.space, q) + rq.method_suffix;
  run_until_complete(set, q, home, scan, first_fetch(q, rq), &rq);
  return std::move(rq.result);
}

std::vector<LikeResult> search_like_set_batch(const StoreSet& set, const LikeQuery& common,
                                              const std::vector<std::string>& ids, const SetScanner& scan) {
  std::vector<ResolvedQuery> resolved(ids.size());
  std::vector<size_t> homes(ids.size(), 0);
  std::map<std::string, std::vector<size_t>> by_space;
  for (size_t i = 0; i < ids.size(); ++i) {
    LikeQuery q = common;
    q.like = {ids[i]};
    try {
      homes[i] = home_store(set, q);
      resolved[i] = resolve_query(set.store(homes[i]), q);
      by_space[resolved[i].result.space].push_back(i);
    } catch (const Error& e) {
      resolved[i].result.label = ids[i];
      resolved[i].result.error = e.what();
    }
  }
  // Queries per scan: each block re-reads every vector, so blocks are large.
  const size_t kBatch = 1024;
  for (const auto& [space, members] : by_space) {
    const std::string method = set_method(set, space, common);
    for (size_t b = 0; b < members.size(); b += kBatch) {
      const size_t nb = std::min(kBatch, members.size() - b);
      std::vector<float> queries;
      int64_t fetch = 1;
      for (size_t j = 0; j < nb; ++j) {
        const ResolvedQuery& rq = resolved[members[b + j]];
        queries.insert(queries.end(), rq.vector.begin(), rq.vector.end());
        fetch = std::max(fetch, first_fetch(common, rq));
      }
      const auto scans = scan(space, queries, static_cast<int64_t>(nb), fetch);
      for (size_t j = 0; j < nb; ++j) {
        const size_t i = members[b + j];
        ResolvedQuery& rq = resolved[i];
        rq.result.method = method + rq.method_suffix;
        if (no_candidate_anywhere(scans[j])) {
          rq.result.error = no_candidates(space, common.filter, set.size());
          continue;
        }
        // A failing scan (a rank lost under MPI) fails the whole batch, not this query.
        if (!finish_set(set, common, homes[i], scans[j], &rq))
          run_until_complete(set, common, homes[i], scan, fetch * 4, &rq);
      }
    }
  }
  std::vector<LikeResult> out;
  for (ResolvedQuery& rq : resolved) out.push_back(std::move(rq.result));
  return out;
}

}  // namespace mmu
