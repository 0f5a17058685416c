#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <set>

#include "base/file_util.h"
#include "base/finite.h"
#include "vector/flat_index.h"
#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/store.h"
#include "mmu/version.h"
#include "base/sha256.h"
#include "store/sqlite_util.h"
#include "store/catalog_schema.h"
#include "store/layout.h"
#include "base/utc_time.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

// The catalog rows of one space: its spaces entry and its (vrow, row) map.
void insert_space(sql::Db& db, const SpaceInfo& info, const std::vector<std::pair<int64_t, int64_t>>& vrows) {
  auto s = db.prepare(
      "INSERT INTO spaces(name, modality, model, version, dim, count, created, sha256) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  s.bind(1, info.name).bind(2, info.modality).bind(3, info.model).bind(4, info.version).bind(5, info.dim);
  s.bind(6, info.count).bind(7, info.created).bind(8, info.sha256);
  s.run();
  auto m = db.prepare("INSERT INTO space_rows(space, vrow, row) VALUES (?1, ?2, ?3)");
  for (const auto& [vrow, row] : vrows) {
    m.bind(1, info.name).bind(2, vrow).bind(3, row);
    m.run();
  }
}

void record_file_hash(sql::Db& db, const std::string& space, const std::string& file, size_t bytes,
                      const std::string& sha256) {
  auto s = db.prepare("INSERT INTO space_files(space, file, bytes, sha256) VALUES (?1, ?2, ?3, ?4)");
  s.bind(1, space).bind(2, file).bind(3, static_cast<int64_t>(bytes)).bind(4, sha256);
  s.run();
}

int64_t insert_file(sql::Db& db, const SourceFile& f, const std::string& path, const std::string& modality,
                    int64_t n_objects) {
  auto s = db.prepare(
      "INSERT INTO files(path, dataset, subset, healpix, size, mtime, modality, n_objects) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  s.bind(1, path).bind(2, f.dataset).bind(3, f.subset).bind(4, f.healpix).bind(5, f.size).bind(6, f.mtime);
  s.bind(7, modality).bind(8, n_objects);
  s.run();
  return sqlite3_last_insert_rowid(db.raw());
}

// Deletes every generation but `live` that no reader pins; a pinned one stays
// for a later build. Each goes under an exclusive lock on its READERS file,
// renamed aside first so that no reader can pin it between the lock and its
// last file. Best effort: what fails to go is tried again next build.
void remove_old_generations(const std::string& dir, const std::string& live) {
  std::error_code ec;
  std::vector<fs::path> entries;  // listed first: renaming while iterating may skip or repeat entries
  for (const auto& e : fs::directory_iterator(dir, ec)) entries.push_back(e.path());
  for (const fs::path& path : entries) {
    const std::string name = path.filename().string();
    if (layout::is_removed_generation(name)) {  // a deletion cut short: unpinnable, as it was renamed under the lock
      fs::remove_all(path, ec);
      continue;
    }
    if (layout::generation_number(name) < 0 || name == live) continue;
    std::unique_ptr<files::TryLock> sole;
    try {
      if (files::TryLock::take(layout::readers_file(path.string()), true, true, &sole) !=
          files::TryLock::Outcome::kHeld)
        continue;  // a reader holds it (or it is gone, or not ours to change)
    } catch (const Error&) {
      continue;
    }
    const fs::path aside = path.string() + layout::kRemovedSuffix;
    fs::rename(path, aside, ec);
    if (!ec) fs::remove_all(aside, ec);
  }
}

// index.faiss as faiss::write_index writes an IndexIDMap2 over an
// IndexFlatIP (FAISS 1.7: "IxM2" header, "IxFI" header, the vectors, the
// ids), with the vectors copied from vectors.f32 in chunks instead of held
// in a FAISS index; tests/store_merge_test.cpp checks the bytes against FAISS.
void write_flat_index_streamed(const std::string& path, int64_t dim, const std::string& vectors_path,
                               const std::vector<int64_t>& ids) {
  const std::string tmp = path + ".tmp";
  std::FILE* out = std::fopen(tmp.c_str(), "wb");
  if (!out) throw IoError(tmp, "create", errno);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(out, std::fclose);
  const auto put = [&](const void* p, size_t bytes) {
    if (bytes > 0 && std::fwrite(p, 1, bytes, out) != bytes) throw IoError(tmp, "write", errno);
  };
  const int64_t n = static_cast<int64_t>(ids.size());
  const auto header = [&](const char* fourcc) {
    put(fourcc, 4);
    const int32_t d = static_cast<int32_t>(dim);
    const int64_t dummy = int64_t{1} << 20;
    const uint8_t trained = 1;
    const int32_t metric = 0;  // METRIC_INNER_PRODUCT
    put(&d, sizeof d);
    put(&n, sizeof n);
    put(&dummy, sizeof dummy);
    put(&dummy, sizeof dummy);
    put(&trained, sizeof trained);
    put(&metric, sizeof metric);
  };
  header("IxM2");
  header("IxFI");
  const uint64_t floats = static_cast<uint64_t>(n * dim);
  put(&floats, sizeof floats);
  std::FILE* in = std::fopen(vectors_path.c_str(), "rb");
  if (!in) throw IoError(vectors_path, "open", errno);
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> in_closer(in, std::fclose);
  std::vector<char> buf(size_t{1} << 20);
  uint64_t left = floats * sizeof(float);
  while (left > 0) {
    const size_t take = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    if (std::fread(buf.data(), 1, take, in) != take) throw IoError(vectors_path, "read", errno ? errno : EIO);
    put(buf.data(), take);
    left -= take;
  }
  const uint64_t count = static_cast<uint64_t>(n);
  put(&count, sizeof count);
  put(ids.data(), ids.size() * sizeof(int64_t));
  if (std::fflush(out) != 0) throw IoError(tmp, "write", errno);
  closer.reset();
  files::fsync_path(tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw IoError(path, "rename into place", errno);
}

}  // namespace

struct StoreLock::Rep {
  std::string dir;
  bool created_dir = false;
  std::unique_ptr<files::FileLock> lock;
};

StoreLock::StoreLock(const std::string& dir, bool wait) : rep_(std::make_unique<Rep>()) {
  rep_->dir = dir;
  std::error_code ec;
  if (fs::exists(dir, ec) && !fs::is_directory(dir, ec))
    throw InvalidArgument("store path '" + dir + "' exists and is not a directory");
  if (fs::is_directory(dir, ec) && !fs::is_empty(dir, ec) && !fs::exists(layout::current_file(dir)) &&
      !fs::exists(layout::lock_file(dir)))
    throw InvalidArgument("'" + dir + "' is a non-empty folder that is not an mmu-search store; refusing to write into it");
  rep_->created_dir = !fs::exists(dir, ec);
  files::make_dirs(dir);
  rep_->lock = std::make_unique<files::FileLock>(
      layout::lock_file(dir), "store '" + dir + "' is being written by another process",
      wait);
}

StoreLock::~StoreLock() {
  // A folder this lock created and nothing was committed into goes again,
  // so a failed first build leaves no empty store behind. The lock file is
  // unlinked while still held; a waiter then finds it replaced and retries.
  std::error_code ec;
  if (rep_->created_dir) {
    bool only_lock = true;  // e.g. resume/ checkpoints of a model build stay, with the lock file
    for (const auto& e : fs::directory_iterator(rep_->dir, ec))
      only_lock = only_lock && e.path().filename() == layout::kLockFile;
    if (only_lock && !ec) {
      fs::remove(layout::lock_file(rep_->dir), ec);
      fs::remove(rep_->dir, ec);
    }
  }
  rep_->lock.reset();
}

struct StoreWriter::Rep {
  std::string dir, gen_name, tmp_path;
  std::unique_ptr<StoreLock> lock;
  std::unique_ptr<sql::Db> db;
  int64_t next_row = 0;
  bool committed = false;
  std::vector<SpaceInfo> spaces;                  // written so far
  std::set<std::string> modalities_with_default;  // set_default_space called
};

StoreWriter::StoreWriter(const std::string& dir, std::unique_ptr<StoreLock> held) : rep_(std::make_unique<Rep>()) {
  Rep& r = *rep_;
  r.dir = dir;
  std::error_code ec;
  r.lock = held ? std::move(held) : std::make_unique<StoreLock>(dir);
  // Leftovers of interrupted builds are never live: remove them.
  int64_t max_gen = 0;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (layout::is_unfinished_generation(name)) fs::remove_all(e.path(), ec);
    max_gen = std::max(max_gen, layout::generation_number(name));
  }
  r.gen_name = layout::generation_name(max_gen + 1);
  r.tmp_path = layout::unfinished_generation_dir(dir, r.gen_name);
  files::make_dirs(r.tmp_path);
  files::write_atomic(layout::readers_file(r.tmp_path), std::string());  // what readers lock (Store::open)
  r.db = std::make_unique<sql::Db>(layout::catalog_file(r.tmp_path), SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  // The generation is invisible until commit, so no journal is needed: a
  // crash discards the whole directory.
  r.db->exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; BEGIN;");
  r.db->exec(schema::kCreateTables);
  auto meta = r.db->prepare("INSERT INTO meta(key, value) VALUES (?1, ?2)");
  meta.bind(1, std::string("created")).bind(2, utc_now()).run();
  meta.bind(1, std::string("mmu_version")).bind(2, std::string(kVersion)).run();
}

StoreWriter::~StoreWriter() {
  Rep& r = *rep_;
  r.db.reset();
  if (!r.committed && !r.tmp_path.empty()) {
    std::error_code ec;
    fs::remove_all(r.tmp_path, ec);
  }
}

int64_t StoreWriter::add_file(const SourceFile& f, Modality m, int64_t n_objects) {
  return insert_file(*rep_->db, f, fs::absolute(f.path).lexically_normal().string(), modality_name(m), n_objects);
}

int64_t StoreWriter::copy_file(const Store& old, const StoredFile& f) {
  Rep& r = *rep_;
  const int64_t file_id = insert_file(*r.db, f.file, f.file.path, f.modality, f.n_objects);
  const int64_t first = r.next_row, shift = first - f.first_row;
  // A second, read-only connection to the old catalog: ATTACH is not allowed
  // inside the writer's open transaction.
  sql::Db src(layout::catalog_file(old.generation_path()), SQLITE_OPEN_READONLY);
  auto get = src.prepare(
      "SELECT row, object_id, survey, subset, ra, dec, healpix, hpx_fine, index_in_file, modality FROM objects "
      "WHERE file_id = ?1 ORDER BY row");
  get.bind(1, f.id);
  auto put = r.db->prepare(
      "INSERT INTO objects(row, object_id, survey, subset, ra, dec, healpix, hpx_fine, file_id, index_in_file, "
      "modality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  int64_t n = 0;
  while (get.step()) {
    put.bind(1, get.int64(0) + shift).bind(2, get.text(1)).bind(3, get.text(2)).bind(4, get.text(3));
    put.bind(5, get.real(4)).bind(6, get.real(5)).bind(7, get.int64(6)).bind(8, get.int64(7));
    put.bind(9, file_id).bind(10, get.int64(8)).bind(11, get.text(9));
    put.run();
    ++n;
  }
  if (n != f.n_objects)
    throw FormatError("store '" + old.path() + "' is damaged: file '" + f.file.path + "' lists " +
                      std::to_string(f.n_objects) + " objects, the catalog holds " + std::to_string(n));
  r.next_row += n;
  auto has_values = src.prepare("SELECT count(*) FROM sqlite_master WHERE name = 'object_values'");
  has_values.step();
  if (has_values.int64(0) > 0 && n > 0) {  // format 1 stores have no catalog values
    auto vget = src.prepare("SELECT name, row, num, txt FROM object_values WHERE row BETWEEN ?1 AND ?2");
    vget.bind(1, f.first_row).bind(2, f.first_row + n - 1);
    auto vput = r.db->prepare("INSERT INTO object_values(name, row, num, txt) VALUES (?1, ?2, ?3, ?4)");
    while (vget.step()) {
      vput.bind(1, vget.text(0)).bind(2, vget.int64(1) + shift);
      vput.bind_value(3, vget, 2).bind_value(4, vget, 3);
      vput.run();
    }
  }
  return first;
}

void StoreWriter::copy_links(const Store& old, const std::function<int64_t(int64_t)>& map_row) {
  sql::Db src(layout::catalog_file(old.generation_path()), SQLITE_OPEN_READONLY);
  auto get = src.prepare("SELECT row_a, row_b, sep_arcsec FROM links");
  auto put = rep_->db->prepare("INSERT OR REPLACE INTO links(row_a, row_b, sep_arcsec) VALUES (?1, ?2, ?3)");
  while (get.step()) {
    const int64_t a = map_row(get.int64(0)), b = map_row(get.int64(1));
    if (a < 0 || b < 0) continue;
    put.bind(1, std::min(a, b)).bind(2, std::max(a, b)).bind(3, get.real(2));
    put.run();
  }
}

bool StoreWriter::has_space(const std::string& name) const {
  for (const SpaceInfo& s : rep_->spaces)
    if (s.name == name) return true;
  return false;
}

void StoreWriter::set_default_space(const std::string& modality, const std::string& space, bool chosen) {
  rep_->modalities_with_default.insert(modality);
  auto put = rep_->db->prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  put.bind(1, schema::default_space_key(modality)).bind(2, space).run();
  if (chosen) put.bind(1, schema::default_space_chosen_key(modality)).bind(2, std::string("1")).run();
}

int64_t StoreWriter::add_objects(const std::vector<NewObject>& objects) {
  auto s = rep_->db->prepare(
      "INSERT INTO objects(row, object_id, survey, subset, ra, dec, healpix, hpx_fine, file_id, index_in_file, "
      "modality) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)");
  const int64_t first = rep_->next_row;
  for (const NewObject& o : objects) {
    s.bind(1, rep_->next_row++)
        .bind(2, o.object_id)
        .bind(3, o.survey)
        .bind(4, o.subset)
        .bind(5, o.ra)
        .bind(6, o.dec)
        .bind(7, o.healpix)
        .bind(8, o.hpx_fine)
        .bind(9, o.file_id)
        .bind(10, o.index_in_file)
        .bind(11, std::string(modality_name(o.modality)));
    s.run();
  }
  return first;
}

void StoreWriter::add_values(const std::vector<int64_t>& rows, const ScalarColumn& column) {
  using T = ScalarColumn::Type;
  // One statement per value kind: the other column is left NULL.
  auto s = rep_->db->prepare(std::string("INSERT INTO object_values(name, row, ") +
                             (column.type == T::kText ? "txt" : "num") + ") VALUES (?1, ?2, ?3)");
  for (size_t i = 0; i < rows.size(); ++i) {
    if (!column.present[i]) continue;
    s.bind(1, column.name).bind(2, rows[i]);
    switch (column.type) {
      case T::kInteger: s.bind(3, column.integers[i]); break;
      case T::kReal: s.bind(3, column.reals[i]); break;
      case T::kText: s.bind(3, column.texts[i]); break;
    }
    s.run();
  }
}

void StoreWriter::add_space(const SpaceInfo& info, const std::vector<int64_t>& rows, const float* vectors,
                            const std::string& fit_blob) {
  Rep& r = *rep_;
  const std::string dir = layout::space_dir(r.tmp_path, info.name);
  files::make_dirs(dir);
  const int64_t n = static_cast<int64_t>(rows.size());
  // The last gate: whatever encoder made them, no NaN/Inf vector is written.
  const int64_t bad = first_non_finite_row(vectors, n, info.dim);
  if (bad >= 0)
    throw FormatError("space '" + info.name + "': the vector of catalog row " + std::to_string(rows[bad]) +
                      " has NaN or Inf values; nothing was written");
  const size_t bytes = static_cast<size_t>(n * info.dim) * sizeof(float);
  files::write_atomic(layout::vectors_file(dir), vectors, bytes);
  files::write_atomic(layout::fit_file(dir), fit_blob);
  record_file_hash(*r.db, info.name, layout::kVectorsFile, bytes, sha256_file(layout::vectors_file(dir)));
  record_file_hash(*r.db, info.name, layout::kFitFile, fit_blob.size(), sha256_hex(fit_blob));
  write_flat_index(layout::flat_index_file(dir), info.dim, n, vectors, rows.data());
  SpaceInfo row = info;
  row.count = n;
  if (row.created.empty()) row.created = utc_now();
  if (row.sha256.empty()) row.sha256 = sha256_hex(fit_blob);
  std::vector<std::pair<int64_t, int64_t>> vrows;
  for (int64_t i = 0; i < n; ++i) vrows.emplace_back(i, rows[i]);
  insert_space(*r.db, row, vrows);
  r.spaces.push_back(row);
}

void StoreWriter::add_space_streamed(const SpaceInfo& info, const std::string& fit_blob,
                                     const std::function<bool(std::vector<int64_t>*, std::vector<float>*)>& next) {
  Rep& r = *rep_;
  const std::string dir = layout::space_dir(r.tmp_path, info.name);
  files::make_dirs(dir);
  const std::string vectors_path = layout::vectors_file(dir);
  std::vector<int64_t> rows;  // all of them: the space_rows table and the FAISS ids
  {
    // The generation is invisible until commit: a plain write, synced once at the end.
    std::FILE* out = std::fopen(vectors_path.c_str(), "wb");
    if (!out) throw IoError(vectors_path, "create", errno);
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(out, std::fclose);
    std::vector<int64_t> chunk_rows;
    std::vector<float> chunk;
    while (next(&chunk_rows, &chunk)) {
      const int64_t n = static_cast<int64_t>(chunk_rows.size());
      if (static_cast<int64_t>(chunk.size()) != n * info.dim)
        throw InvalidArgument("space '" + info.name + "': a chunk of " + std::to_string(n) + " rows has " +
                              std::to_string(chunk.size()) + " floats, not rows x " + std::to_string(info.dim));
      const int64_t bad = first_non_finite_row(chunk.data(), n, info.dim);
      if (bad >= 0)
        throw FormatError("space '" + info.name + "': the vector of catalog row " + std::to_string(chunk_rows[bad]) +
                          " has NaN or Inf values; nothing was written");
      for (int64_t row : chunk_rows) {
        if (!rows.empty() && row <= rows.back())
          throw InvalidArgument("space '" + info.name + "': rows must ascend, got " + std::to_string(row) + " after " +
                                std::to_string(rows.back()));
        rows.push_back(row);
      }
      const size_t bytes = chunk.size() * sizeof(float);
      if (bytes > 0 && std::fwrite(chunk.data(), 1, bytes, out) != bytes) throw IoError(vectors_path, "write", errno);
    }
    if (std::fflush(out) != 0) throw IoError(vectors_path, "write", errno);
  }
  files::fsync_path(vectors_path);
  const int64_t n = static_cast<int64_t>(rows.size());
  files::write_atomic(layout::fit_file(dir), fit_blob);
  record_file_hash(*r.db, info.name, layout::kVectorsFile, static_cast<size_t>(n * info.dim) * sizeof(float),
                   sha256_file(vectors_path));
  record_file_hash(*r.db, info.name, layout::kFitFile, fit_blob.size(), sha256_hex(fit_blob));
  write_flat_index_streamed(layout::flat_index_file(dir), info.dim, vectors_path, rows);
  SpaceInfo row = info;
  row.count = n;
  if (row.created.empty()) row.created = utc_now();
  if (row.sha256.empty()) row.sha256 = sha256_hex(fit_blob);
  std::vector<std::pair<int64_t, int64_t>> vrows;
  vrows.reserve(rows.size());
  for (int64_t i = 0; i < n; ++i) vrows.emplace_back(i, rows[i]);
  rows = {};
  insert_space(*r.db, row, vrows);
  r.spaces.push_back(row);
}

void StoreWriter::set_meta(const std::string& key, const std::string& value) {
  auto put = rep_->db->prepare("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)");
  put.bind(1, key).bind(2, value).run();
}

void StoreWriter::copy_space(const Store& old, const std::string& name) {
  Rep& r = *rep_;
  const SpaceInfo info = old.space(name);
  old.verify_space_files(name);  // hard links would carry a damaged file on
  const fs::path src = old.space_dir(name), dst = layout::space_dir(r.tmp_path, name);
  files::make_dirs(dst.string());
  // Every file of the space: vectors, fit, FAISS files and the index record.
  for (const auto& e : fs::directory_iterator(src)) {
    if (!e.is_regular_file()) continue;
    const fs::path to = dst / e.path().filename();
    std::error_code ec;
    fs::create_hard_link(e.path(), to, ec);
    if (ec) fs::copy_file(e.path(), to, ec);
    if (ec) throw IoError(to.string(), "copy", ec.value());
  }
  insert_space(*r.db, info, old.space_rows(name));
  for (const SpaceFileHash& h : old.space_file_hashes(name)) record_file_hash(*r.db, name, h.file, h.bytes, h.sha256);
  r.spaces.push_back(info);
}

void StoreWriter::commit() {
  Rep& r = *rep_;
  // Recorded, not left to readers: the default stays what it was at the build
  // even if a later version changes the rule.
  for (const SpaceInfo& s : r.spaces)
    if (!r.modalities_with_default.count(s.modality))
      set_default_space(s.modality, default_space_by_rule(r.spaces, s.modality), false);
  r.db->exec(
      "INSERT INTO value_columns(name, numbers, texts) "
      "SELECT name, count(num), count(txt) FROM object_values GROUP BY name;");
  r.db->exec("COMMIT; PRAGMA user_version = " + std::to_string(kStoreFormatVersion) + ";");
  const std::string catalog = r.db->path();
  r.db.reset();
  files::fsync_path(catalog);
  files::fsync_path(r.tmp_path);
  const fs::path final_path = layout::generation_dir(r.dir, r.gen_name);
  std::error_code ec;
  fs::rename(r.tmp_path, final_path, ec);
  if (ec) throw IoError(final_path.string(), "rename into place", ec.value());
  files::fsync_path(r.dir);
  // The switch: one atomic rename of CURRENT.
  files::write_atomic(layout::current_file(r.dir), r.gen_name + "\n");
  r.committed = true;
  remove_old_generations(r.dir, r.gen_name);
}

}  // namespace mmu
