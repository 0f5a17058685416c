#include "mmu/store.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_map>

#include "base/file_util.h"
#include "base/sha256.h"
#include "mmu/error.h"
#include "mmu/sky.h"
#include "mmu/text.h"
#include "mmu/where_filter.h"
#include "vector/space_searcher.h"
#include "store/sqlite_util.h"
#include "store/catalog_schema.h"
#include "store/layout.h"

namespace fs = std::filesystem;

namespace mmu {

std::string default_store_path() {
  const char* env = std::getenv("MMU_STORE");
  return (env && *env) ? std::string(env) : std::string("mmu-store");
}

struct Store::Rep {
  std::string path, gen_path;
  // Shared lock on the generation's READERS file while this Store lives: no
  // build deletes a generation a reader holds (see pin_generation).
  std::unique_ptr<files::TryLock> pin;
  std::unique_ptr<sql::Db> db;
  std::map<std::string, SpaceInfo> spaces;
  std::map<std::string, std::string> meta;
  // Opened on first use and kept: mapping and index loading are per store, not per query.
  std::mutex searchers_mu;
  std::map<std::string, std::unique_ptr<SpaceSearcher>> searchers;
  bool has_file_hashes = false;  // the catalog has a space_files table
  std::mutex verified_mu;
  std::set<std::string> verified;  // spaces whose files verify_space_files checked
};

Store::Store() : rep_(std::make_unique<Rep>()) {}
Store::~Store() = default;

namespace {

std::string how_to_build(const std::string& dir) {
  return "build one with: mmu-index build <folder of MMU files> --store " + dir;
}

CatalogRow read_row(const sql::Stmt& s) {
  CatalogRow r;
  r.row = s.int64(0);
  r.object_id = s.text(1);
  r.survey = s.text(2);
  r.subset = s.text(3);
  r.ra = s.real(4);
  r.dec = s.real(5);
  r.healpix = s.int64(6);
  r.hpx_fine = s.int64(7);
  r.file = s.text(8);
  r.index_in_file = s.int64(9);
  return r;
}

constexpr const char* kRowSelect =
    "SELECT o.row, o.object_id, o.survey, o.subset, o.ra, o.dec, o.healpix, o.hpx_fine, f.path, o.index_in_file "
    "FROM objects o JOIN files f ON f.id = o.file_id ";

// Catalog rows matching `where` (with one text parameter ?1).
std::vector<CatalogRow> select_rows(sql::Db& db, const std::string& where, const std::string& param) {
  auto s = db.prepare(std::string(kRowSelect) + where);
  s.bind(1, param);
  std::vector<CatalogRow> out;
  while (s.step()) out.push_back(read_row(s));
  return out;
}

}  // namespace

std::string live_generation(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw NotFound("no store at '" + dir + "' (the folder does not exist); " + how_to_build(dir));
  const std::string current = layout::current_file(dir);
  if (!fs::exists(current, ec))
    throw NotFound("no store at '" + dir + "' (no " + std::string(layout::kCurrentFile) + " file); " +
                   how_to_build(dir));
  std::string gen = files::read_all(current);
  while (!gen.empty() && (gen.back() == '\n' || gen.back() == ' ')) gen.pop_back();
  if (!layout::has_generation_prefix(gen) || gen.find('/') != std::string::npos)
    throw FormatError("store '" + dir + "' is damaged: CURRENT names '" + text::for_message(gen, 80) + "'");
  return gen;
}

namespace {

// Pins the live generation of the store at dir: a shared lock on its READERS
// file, taken after reading CURRENT and then checked to still lie in that
// generation (a build renames a generation aside under an exclusive lock
// before deleting it). Retried while builds move CURRENT meanwhile; a pinned
// generation CURRENT no longer names is still whole, and kept after the last try.
std::pair<std::string, std::unique_ptr<files::TryLock>> pin_generation(const std::string& dir) {
  constexpr int kTries = 50;
  for (int attempt = 1;; ++attempt) {
    const std::string gen = live_generation(dir);
    const std::string gen_dir = layout::generation_dir(dir, gen);
    const std::string readers = layout::readers_file(gen_dir);
    std::unique_ptr<files::TryLock> pin;
    // create: generations written before READERS existed get one on first read.
    const auto got = files::TryLock::take(readers, false, true, &pin);
    if (got == files::TryLock::Outcome::kReadOnly) {
      std::cerr << "warning: cannot create '" << readers << "' (no write permission): reading store '" << dir
                << "' without pinning " << gen << "; a rebuild by its owner may remove it while this runs\n";
      return {gen, nullptr};
    }
    const bool still_live = live_generation(dir) == gen;
    if (got == files::TryLock::Outcome::kHeld && pin->still_at(readers) && (still_live || attempt >= kTries))
      return {gen, std::move(pin)};
    // A build removes only generations CURRENT no longer names.
    if (got == files::TryLock::Outcome::kMissing && still_live)
      throw FormatError("store '" + dir + "' is damaged: CURRENT names " + gen + " but '" + gen_dir +
                        "' is missing");
    // Else CURRENT had moved on and a build is removing gen: read it again.
    if (attempt >= kTries)
      throw IoError(readers, "pin the live generation (it was replaced " + std::to_string(kTries) +
                    " times while opening: are builds running back to back?)", EAGAIN);
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(attempt, 10)));
  }
}

}  // namespace

std::unique_ptr<Store> Store::open(const std::string& dir) {
  std::error_code ec;
  auto [gen, pin] = pin_generation(dir);
  std::unique_ptr<Store> s(new Store());
  s->rep_->path = dir;
  s->rep_->pin = std::move(pin);
  s->rep_->gen_path = layout::generation_dir(dir, gen);
  const std::string catalog = layout::catalog_file(s->rep_->gen_path);
  if (!fs::exists(catalog, ec))
    throw FormatError("store '" + dir + "' is damaged: '" + catalog + "' is missing");
  s->rep_->db = std::make_unique<sql::Db>(catalog, SQLITE_OPEN_READONLY);
  auto v = s->rep_->db->prepare("PRAGMA user_version");
  v.step();
  const int64_t version = v.int64(0);
  if (version > kStoreFormatVersion)
    throw FormatError("store '" + dir + "' has format version " + std::to_string(version) +
                      ", newer than this mmu-search reads (" + std::to_string(kStoreFormatVersion) +
                      "): upgrade mmu-search");
  if (version < 1) throw FormatError("'" + catalog + "' is not an mmu-search catalog (format version 0)");
  auto sp = s->rep_->db->prepare(
      "SELECT name, modality, model, version, dim, count, created, sha256 FROM spaces ORDER BY name");
  while (sp.step()) {
    SpaceInfo info{sp.text(0), sp.text(1), sp.text(2), sp.text(3), sp.int64(4), sp.int64(5), sp.text(6), sp.text(7)};
    s->rep_->spaces[info.name] = info;
  }
  auto t = s->rep_->db->prepare("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'space_files'");
  t.step();
  s->rep_->has_file_hashes = t.int64(0) > 0;
  auto meta = s->rep_->db->prepare("SELECT key, value FROM meta");
  while (meta.step()) s->rep_->meta[meta.text(0)] = meta.text(1);
  return s;
}

const std::string& Store::path() const { return rep_->path; }
const std::string& Store::generation_path() const { return rep_->gen_path; }

int64_t Store::num_objects() const {
  auto s = rep_->db->prepare("SELECT count(*) FROM objects");
  s.step();
  return s.int64(0);
}

std::vector<std::string> Store::surveys() const {
  std::vector<std::string> out;
  auto s = rep_->db->prepare("SELECT DISTINCT survey FROM objects ORDER BY survey");
  while (s.step()) out.push_back(s.text(0));
  return out;
}

std::vector<CatalogRow> Store::find_by_id(const std::string& object_id) const {
  return select_rows(*rep_->db, "WHERE o.object_id = ?1 ORDER BY o.survey, o.row", object_id);
}

std::vector<CatalogRow> Store::rows(const std::vector<int64_t>& rows) const {
  // One query per chunk of rows (a query per row was most of a warm --like).
  std::unordered_map<int64_t, CatalogRow> found;
  const size_t chunk = 500;
  for (size_t i = 0; i < rows.size(); i += chunk) {
    const size_t n = std::min(chunk, rows.size() - i);
    std::string sql = std::string(kRowSelect) + "WHERE o.row IN (";
    for (size_t j = 0; j < n; ++j) sql += j ? ",?" : "?";
    auto s = rep_->db->prepare(sql + ")");
    for (size_t j = 0; j < n; ++j) s.bind(static_cast<int>(j + 1), rows[i + j]);
    while (s.step()) {
      CatalogRow r = read_row(s);
      found.emplace(r.row, std::move(r));
    }
  }
  std::vector<CatalogRow> out;
  out.reserve(rows.size());
  for (int64_t r : rows) {
    auto it = found.find(r);
    if (it == found.end()) throw NotFound("row " + std::to_string(r) + " is not in the catalog of '" + rep_->path + "'");
    out.push_back(it->second);
  }
  return out;
}

std::vector<CatalogRow> Store::positions(const std::string& survey) const {
  return select_rows(*rep_->db, "WHERE ?1 = '' OR o.survey = ?1 OR o.survey || '/' || o.subset = ?1 ORDER BY o.row",
                     survey);
}

std::vector<int64_t> Store::linked_rows(int64_t row) const {
  auto s = rep_->db->prepare(
      "SELECT row_b, sep_arcsec FROM links WHERE row_a = ?1 UNION SELECT row_a, sep_arcsec FROM links "
      "WHERE row_b = ?1 ORDER BY 2, 1");
  s.bind(1, row);
  std::vector<int64_t> out;
  while (s.step()) out.push_back(s.int64(0));
  return out;
}

std::string default_space_by_rule(const std::vector<SpaceInfo>& spaces, const std::string& modality) {
  const SpaceInfo* model = nullptr;
  const SpaceInfo* baseline = nullptr;
  for (const SpaceInfo& s : spaces) {
    if (s.modality != modality) continue;
    if (s.model == "baseline-pca") {  // build.cpp's baseline spaces
      if (!baseline) baseline = &s;
    } else if (!model || std::tie(s.created, s.name) > std::tie(model->created, model->name)) {
      model = &s;
    }
  }
  return model ? model->name : baseline ? baseline->name : "";
}

std::string Store::default_space(const std::string& modality) const {
  const auto it = rep_->meta.find(schema::default_space_key(modality));
  if (it != rep_->meta.end()) {
    const auto sp = rep_->spaces.find(it->second);
    if (sp != rep_->spaces.end() && sp->second.modality == modality) return it->second;
  }
  return default_space_by_rule(spaces(), modality);
}

bool Store::default_space_chosen(const std::string& modality) const {
  const auto chosen = rep_->meta.find(schema::default_space_chosen_key(modality));
  const auto name = rep_->meta.find(schema::default_space_key(modality));
  return chosen != rep_->meta.end() && chosen->second == "1" && name != rep_->meta.end() &&
         default_space(modality) == name->second;
}

void set_default_space(const std::string& dir, const std::string& modality, const std::string& space) {
  // The build's lock: a build that started earlier would otherwise commit a
  // generation without this choice.
  std::error_code ec;
  if (!fs::is_regular_file(layout::current_file(dir), ec)) Store::open(dir);  // throws naming what is missing
  const StoreLock lock(dir);
  auto store = Store::open(dir);
  const SpaceInfo info = store->space(store->resolve_space_name(space));
  if (!modality.empty() && modality != info.modality)
    throw InvalidArgument("space '" + info.name + "' holds " + info.modality + " vectors, not " + modality +
                          " (--modality)");
  sql::Db db(layout::catalog_file(store->generation_path()), SQLITE_OPEN_READWRITE);
  db.exec("BEGIN IMMEDIATE");
  auto put = db.prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  put.bind(1, schema::default_space_key(info.modality)).bind(2, info.name).run();
  put.bind(1, schema::default_space_chosen_key(info.modality)).bind(2, std::string("1")).run();
  db.exec("COMMIT");
}

void link_objects(const std::string& dir, const std::vector<RowLink>& links) {
  const StoreLock lock(dir);       // no build may replace the generation meanwhile
  auto store = Store::open(dir);  // validates the store and its version
  sql::Db db(layout::catalog_file(store->generation_path()), SQLITE_OPEN_READWRITE);
  db.exec("BEGIN IMMEDIATE");
  auto ins = db.prepare("INSERT OR REPLACE INTO links(row_a, row_b, sep_arcsec) VALUES (?1, ?2, ?3)");
  for (const RowLink& l : links) {
    ins.bind(1, std::min(l.row_a, l.row_b)).bind(2, std::max(l.row_a, l.row_b)).bind(3, l.sep_arcsec);
    ins.run();
  }
  db.exec("COMMIT");
}

std::vector<std::pair<int64_t, int64_t>> Store::space_rows(const std::string& name) const {
  auto s = rep_->db->prepare("SELECT vrow, row FROM space_rows WHERE space = ?1 ORDER BY vrow");
  s.bind(1, name);
  std::vector<std::pair<int64_t, int64_t>> out;
  while (s.step()) out.emplace_back(s.int64(0), s.int64(1));
  return out;
}

std::vector<std::string> Store::files_signature() const {
  auto s = rep_->db->prepare("SELECT path, size, mtime, n_objects FROM files ORDER BY id");
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0) + " " + std::to_string(s.int64(1)) + " " + std::to_string(s.int64(2)) + " " +
                                 std::to_string(s.int64(3)));
  return out;
}

std::vector<StoredFile> Store::files() const {
  // Each file's first catalog row in one pass over the objects: a correlated
  // min(row) per file scanned them once per file (objects has no file_id index).
  std::unordered_map<int64_t, int64_t> first_rows;
  {
    auto m = rep_->db->prepare("SELECT file_id, min(row) FROM objects GROUP BY file_id");
    while (m.step()) first_rows[m.int64(0)] = m.int64(1);
  }
  auto s = rep_->db->prepare(
      "SELECT f.id, f.path, f.dataset, f.subset, f.healpix, f.size, f.mtime, f.modality, f.n_objects "
      "FROM files f ORDER BY f.id");
  std::vector<StoredFile> out;
  while (s.step()) {
    StoredFile f;
    f.id = s.int64(0);
    f.file.path = s.text(1);
    f.file.dataset = s.text(2);
    f.file.subset = s.text(3);
    f.file.healpix = s.int64(4);
    f.file.size = s.int64(5);
    f.file.mtime = s.int64(6);
    f.modality = s.text(7);
    f.n_objects = s.int64(8);
    const auto first = first_rows.find(f.id);
    f.first_row = first == first_rows.end() ? 0 : first->second;
    out.push_back(f);
  }
  return out;
}

std::vector<SpaceInfo> Store::spaces() const {
  std::vector<SpaceInfo> out;
  for (const auto& kv : rep_->spaces) out.push_back(kv.second);
  return out;
}

SpaceInfo Store::space(const std::string& name) const {
  auto it = rep_->spaces.find(name);
  if (it != rep_->spaces.end()) return it->second;
  std::string names;
  for (const auto& kv : rep_->spaces) names += (names.empty() ? "" : ", ") + kv.first;
  throw NotFound("no space '" + name + "' in store '" + rep_->path + "' (it has: " +
                 (names.empty() ? "none" : names) + ")");
}

std::string Store::resolve_space_name(const std::string& name) const {
  if (rep_->spaces.count(name)) return name;
  std::vector<std::string> versions;
  for (const auto& kv : rep_->spaces)
    if (kv.first.rfind(name + "@", 0) == 0) versions.push_back(kv.first);
  if (versions.size() == 1) return versions.front();
  if (versions.size() > 1) {
    std::string list;
    for (const auto& v : versions) list += (list.empty() ? "" : ", ") + v;
    throw InvalidArgument("space '" + name + "' has several versions in the store (" + list + "): name one");
  }
  return name;
}

std::vector<std::string> Store::spaces_of_row(int64_t row) const {
  auto s = rep_->db->prepare("SELECT space FROM space_rows WHERE row = ?1 ORDER BY space");
  s.bind(1, row);
  std::vector<std::string> out;
  while (s.step()) out.push_back(s.text(0));
  return out;
}

std::string Store::space_dir(const std::string& name) const {
  return layout::space_dir(rep_->gen_path, name);
}

std::vector<std::pair<CatalogRow, double>> Store::objects_in_cone(double ra, double dec, double radius_deg) const {
  const auto ranges = fine_key_ranges_in_cone(ra, dec, radius_deg);
  std::string sql = std::string(kRowSelect) + "WHERE ";
  for (size_t i = 0; i < ranges.size(); ++i) sql += i ? " OR (o.hpx_fine >= ? AND o.hpx_fine < ?)" : "(o.hpx_fine >= ? AND o.hpx_fine < ?)";
  auto s = rep_->db->prepare(sql);
  for (size_t i = 0; i < ranges.size(); ++i) s.bind(static_cast<int>(2 * i + 1), ranges[i].first).bind(static_cast<int>(2 * i + 2), ranges[i].second);
  std::vector<std::pair<CatalogRow, double>> out;
  while (s.step()) {
    CatalogRow r = read_row(s);
    const double sep = angular_separation_deg(ra, dec, r.ra, r.dec);
    if (sep <= radius_deg) out.emplace_back(std::move(r), sep);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.second != b.second ? a.second < b.second : a.first.row < b.first.row;
  });
  return out;
}

std::vector<int64_t> Store::filtered_vector_rows(const std::string& name, const RowFilter& f) const {
  // Placeholders only: every value the user gave is bound, never pasted.
  auto placeholders = [](size_t n) {
    std::string p;
    for (size_t i = 0; i < n; ++i) p += i ? ",?" : "?";
    return p;
  };
  std::vector<int64_t> where_rows;
  if (!f.where.empty()) where_rows = rows_where(*this, f.where);
  for (int64_t cell : f.cells)
    if (cell < 0 || cell >= kNumCells)
      throw InvalidArgument("--cells: " + std::to_string(cell) + " is not an nside-16 NESTED cell (0.." +
                            std::to_string(kNumCells - 1) + ")");
  if (f.cone && (!valid_sky_position(f.cone->ra, f.cone->dec) || !(f.cone->radius_deg > 0)))
    throw InvalidArgument("--cone needs RA,DEC,RADIUS in degrees (0..360, -90..90, radius > 0)");
  std::vector<std::pair<int64_t, int64_t>> ranges;
  if (f.cone) ranges = fine_key_ranges_in_cone(f.cone->ra, f.cone->dec, f.cone->radius_deg);
  std::string sql =
      "SELECT s.vrow, s.row, o.ra, o.dec FROM space_rows s JOIN objects o ON o.row = s.row WHERE s.space = ?";
  if (!f.surveys.empty())
    sql += " AND (o.survey IN (" + placeholders(f.surveys.size()) + ") OR o.survey || '/' || o.subset IN (" +
           placeholders(f.surveys.size()) + "))";
  if (!f.cells.empty()) sql += " AND o.healpix IN (" + placeholders(f.cells.size()) + ")";
  if (f.cone) {
    sql += " AND (";
    for (size_t i = 0; i < ranges.size(); ++i) sql += i ? " OR (o.hpx_fine >= ? AND o.hpx_fine < ?)" : "(o.hpx_fine >= ? AND o.hpx_fine < ?)";
    sql += ranges.empty() ? "0)" : ")";
  }
  auto s = rep_->db->prepare(sql);
  int p = 1;
  s.bind(p++, name);
  for (int pass = 0; pass < 2; ++pass)
    for (const auto& sv : f.surveys) s.bind(p++, sv);
  for (int64_t c : f.cells) s.bind(p++, c);
  for (const auto& [lo, hi] : ranges) {
    s.bind(p, lo).bind(p + 1, hi);
    p += 2;
  }
  std::vector<int64_t> out;
  while (s.step()) {
    const int64_t row = s.int64(1);
    if (f.rows && !std::binary_search(f.rows->begin(), f.rows->end(), row)) continue;
    if (!f.where.empty() && !std::binary_search(where_rows.begin(), where_rows.end(), row)) continue;
    if (f.cone && angular_separation_deg(f.cone->ra, f.cone->dec, s.real(2), s.real(3)) > f.cone->radius_deg) continue;
    out.push_back(s.int64(0));
  }
  std::sort(out.begin(), out.end());
  return out;
}

const SpaceSearcher& Store::searcher(const std::string& name) const {
  std::lock_guard<std::mutex> lock(rep_->searchers_mu);
  auto& slot = rep_->searchers[name];
  if (!slot) {
    std::string vectors_sha256;  // what an sq8 copy must record to be used
    for (const SpaceFileHash& h : space_file_hashes(name))
      if (h.file == layout::kVectorsFile) vectors_sha256 = h.sha256;
    slot = std::make_unique<SpaceSearcher>(space_dir(name), space(name), vectors_sha256);
  }
  return *slot;
}

std::vector<std::vector<Hit>> Store::search(const std::string& name, const float* queries, int64_t nq, int64_t k,
                                            const std::vector<int64_t>* subset, const SearchOptions& opts) const {
  return searcher(name).search(queries, nq, k, subset, opts);
}

std::string Store::search_method(const std::string& name, bool filtered, const SearchOptions& opts) const {
  return searcher(name).method(filtered, opts);
}

std::vector<int64_t> Store::rows_of_vectors(const std::string& name, const std::vector<int64_t>& vrows) const {
  std::unordered_map<int64_t, int64_t> row_of;
  const size_t chunk = 500;
  for (size_t i = 0; i < vrows.size(); i += chunk) {
    const size_t n = std::min(chunk, vrows.size() - i);
    std::string sql = "SELECT vrow, row FROM space_rows WHERE space = ?1 AND vrow IN (";
    for (size_t j = 0; j < n; ++j) sql += j ? ",?" : "?";
    auto s = rep_->db->prepare(sql + ")");
    s.bind(1, name);
    for (size_t j = 0; j < n; ++j) s.bind(static_cast<int>(j + 2), vrows[i + j]);
    while (s.step()) row_of[s.int64(0)] = s.int64(1);
  }
  std::vector<int64_t> out;
  out.reserve(vrows.size());
  for (int64_t v : vrows) {
    auto it = row_of.find(v);
    if (it == row_of.end())
      throw FormatError("space '" + name + "' of '" + rep_->path + "' has no catalog row for vector " + std::to_string(v));
    out.push_back(it->second);
  }
  return out;
}

std::vector<float> Store::vector_of(const std::string& name, int64_t row) const {
  const SpaceSearcher& sp = searcher(name);
  auto s = rep_->db->prepare("SELECT vrow FROM space_rows WHERE space = ?1 AND row = ?2");
  s.bind(1, name).bind(2, row);
  if (!s.step()) throw NotFound("row " + std::to_string(row) + " has no vector in space '" + name + "'");
  const float* v = sp.vector(s.int64(0));
  return std::vector<float>(v, v + sp.info().dim);
}

std::vector<float> Store::vectors_at(const std::string& name, const std::vector<int64_t>& vrows) const {
  const SpaceSearcher& sp = searcher(name);
  const int64_t dim = sp.info().dim;
  std::vector<float> out;
  out.reserve(vrows.size() * dim);
  for (int64_t v : vrows) {
    if (v < 0 || v >= sp.info().count)
      throw NotFound("space '" + name + "' has no vector row " + std::to_string(v));
    out.insert(out.end(), sp.vector(v), sp.vector(v) + dim);
  }
  return out;
}

// ---- Integrity ----

std::vector<SpaceFileHash> Store::space_file_hashes(const std::string& name) const {
  std::vector<SpaceFileHash> out;
  if (!rep_->has_file_hashes) return out;
  auto s = rep_->db->prepare("SELECT file, bytes, sha256 FROM space_files WHERE space = ?1 ORDER BY file");
  s.bind(1, name);
  while (s.step()) out.push_back({s.text(0), static_cast<size_t>(s.int64(1)), s.text(2)});
  return out;
}

namespace {

void check_hash(const std::string& path, const SpaceFileHash& h, size_t bytes, const std::string& sha256) {
  if (bytes == h.bytes && sha256 == h.sha256) return;
  throw FormatError("'" + path + "' is damaged: " +
                    (bytes != h.bytes ? std::to_string(bytes) + " bytes where the build wrote " + std::to_string(h.bytes)
                                      : std::string("its SHA-256 differs from the one the build recorded")) +
                    "; rebuild the store (mmu-index build --refit)");
}

}  // namespace

std::string Store::read_fit(const std::string& name) const {
  const std::string path = layout::fit_file(space_dir(name));
  std::string blob = files::read_all(path);
  for (const SpaceFileHash& h : space_file_hashes(name))
    if (h.file == layout::kFitFile) check_hash(path, h, blob.size(), sha256_hex(blob));
  return blob;
}

void Store::verify_space_files(const std::string& name) const {
  {
    std::lock_guard<std::mutex> lock(rep_->verified_mu);
    if (rep_->verified.count(name)) return;
  }
  for (const SpaceFileHash& h : space_file_hashes(name)) {
    const std::string path = layout::space_file(space_dir(name), h.file);
    std::error_code ec;
    const auto bytes = fs::file_size(path, ec);
    if (ec) throw FormatError("store '" + rep_->path + "' is damaged: '" + path + "' is missing");
    check_hash(path, h, static_cast<size_t>(bytes), bytes == h.bytes ? sha256_file(path) : std::string());
  }
  std::lock_guard<std::mutex> lock(rep_->verified_mu);
  rep_->verified.insert(name);
}

// ---- Stored catalog columns ----

std::vector<std::pair<int64_t, std::string>> Store::column_values(const std::string& name) const {
  auto s = rep_->db->prepare("SELECT row, num, txt FROM object_values WHERE name = ?1 ORDER BY row");
  s.bind(1, name);
  std::vector<std::pair<int64_t, std::string>> out;
  while (s.step()) {
    if (!s.is_null(2)) out.emplace_back(s.int64(0), s.text(2));
    else if (!s.is_null(1)) out.emplace_back(s.int64(0), text::format_double("%.17g", s.real(1)));
  }
  return out;
}

}  // namespace mmu
