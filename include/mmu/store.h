// The store: a directory holding a SQLite catalog and, per embedding space,
// its raw vectors and how they are searched. Every file of it is named in one
// place, src/store/layout.h, and described in one place, docs/ARCHITECTURE.md
// ("The store").
//
// A build writes a whole new generation and switches CURRENT with an atomic
// rename, so readers and interrupted builds always see a complete store.
// A Store is read-only and safe to share between threads for reading.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mmu/types.h"

namespace mmu {

class SpaceSearcher;  // src/vector/space_searcher.h
struct ScalarColumn;  // mmu/mmu_files.h

// Bumped whenever the on-disk layout changes; kept in PRAGMA user_version.
inline constexpr int kStoreFormatVersion = 2;

// $MMU_STORE when set, else ./mmu-store.
std::string default_store_path();

// The generation CURRENT names ("gen-000042"). Throws NotFound when there is
// no store at dir, FormatError when CURRENT is damaged.
std::string live_generation(const std::string& dir);

// A source file as the catalog recorded it.
struct StoredFile {
  int64_t id = -1;
  SourceFile file;        // path is absolute
  std::string modality;   // modality_name()
  int64_t n_objects = 0;
  int64_t first_row = 0;  // its objects are rows [first_row, first_row + n_objects)
};

// A space file's size and SHA-256 as the build that wrote it recorded them.
struct SpaceFileHash {
  std::string file;  // name in the space folder (layout::kVectorsFile, kFitFile)
  size_t bytes = 0;
  std::string sha256;
};

class Store {
 public:
  // Opens the live generation and pins it: no build deletes it while this
  // Store lives, so every answer comes from that one generation. Throws
  // NotFound (with how to build one) when there is no store at dir, and
  // FormatError when its format version is newer than this program reads.
  static std::unique_ptr<Store> open(const std::string& dir);
  ~Store();

  const std::string& path() const;
  const std::string& generation_path() const;
  int64_t num_objects() const;
  std::vector<std::string> surveys() const;

  std::vector<CatalogRow> find_by_id(const std::string& object_id) const;
  // Rows in the order asked; throws NotFound for a row that does not exist.
  std::vector<CatalogRow> rows(const std::vector<int64_t>& rows) const;

  // Every object's row, id, survey and position (of one survey when survey != "").
  std::vector<CatalogRow> positions(const std::string& survey) const;
  // Rows cross-matched with `row` (see link_objects), nearest first.
  std::vector<int64_t> linked_rows(int64_t row) const;

  std::vector<SpaceInfo> spaces() const;
  // (vrow, row) of every vector of a space, in vrow order.
  std::vector<std::pair<int64_t, int64_t>> space_rows(const std::string& name) const;
  // One line per ingested file: "path size mtime objects", in file order; two
  // stores with equal signatures have equal catalogs.
  std::vector<std::string> files_signature() const;
  // Every ingested file, in file order.
  std::vector<StoredFile> files() const;
  SpaceInfo space(const std::string& name) const;  // throws NotFound listing the spaces
  // `name` itself, or the one space "name@version" when only the model name is given.
  std::string resolve_space_name(const std::string& name) const;
  std::vector<std::string> spaces_of_row(int64_t row) const;
  // The space searched when none is named, for inputs of `modality`: the one
  // the catalog records (see set_default_space; a build records one per
  // modality) while that space exists, else default_space_by_rule. "" when
  // the store has no space of that modality.
  std::string default_space(const std::string& modality) const;
  // Whether default_space(modality) was chosen with set_default_space, not by the rule.
  bool default_space_chosen(const std::string& modality) const;
  std::string space_dir(const std::string& name) const;
  // Catalog rows within radius_deg of (ra, dec), nearest first, with their
  // separations in degrees (exact haversine; a HEALPix covering finds candidates).
  std::vector<std::pair<CatalogRow, double>> objects_in_cone(double ra, double dec, double radius_deg) const;

  // Vector rows (ascending) of space `name` whose objects pass every given
  // restriction of `f`. Throws InvalidArgument for a bad --where expression
  // (rows_where), a cell outside 0..kNumCells-1 or an invalid cone.
  std::vector<int64_t> filtered_vector_rows(const std::string& name, const RowFilter& f) const;

  // Top-k (vector row, score) of space `name` for each of nq queries (nq x dim
  // floats), best first. Exact unless the space has an approximate index and
  // neither a subset (ascending vector rows) nor opts.exact is given.
  std::vector<std::vector<Hit>> search(const std::string& name, const float* queries, int64_t nq, int64_t k,
                                       const std::vector<int64_t>* subset, const SearchOptions& opts) const;
  // How search() runs for these arguments, for output ("exact fp32 scan", ...).
  std::string search_method(const std::string& name, bool filtered, const SearchOptions& opts) const;
  // Catalog rows of vector rows of space `name`, in the order given.
  std::vector<int64_t> rows_of_vectors(const std::string& name, const std::vector<int64_t>& vrows) const;
  // The stored vector of `row` in space `name` (dim floats); throws NotFound.
  std::vector<float> vector_of(const std::string& name, int64_t row) const;
  // The vectors at `vrows` of space `name`, stacked (vrows.size() x dim).
  std::vector<float> vectors_at(const std::string& name, const std::vector<int64_t>& vrows) const;

  // ---- Integrity (checksums recorded at build; a store older than them has none) ----
  // fit.bin of space `name`, checked against its recorded SHA-256 on every
  // read (it is small); throws FormatError naming the file when it differs.
  std::string read_fit(const std::string& name) const;
  // Checks every file of space `name` with a recorded checksum (vectors.f32 and
  // fit.bin), once per Store; throws FormatError naming a damaged one. Hashing
  // the vectors costs ~1 s per GB, so searches do not call it: builds do
  // before they carry a space over.
  void verify_space_files(const std::string& name) const;
  std::vector<SpaceFileHash> space_file_hashes(const std::string& name) const;

 private:
  Store();
  const SpaceSearcher& searcher(const std::string& name) const;
  struct Rep;
  std::unique_ptr<Rep> rep_;

  // ---- Stored catalog columns ----
 public:
  // (row, value) of every object with a value in catalog column `name`
  // (StoreWriter::add_values), ascending by row: a text value as stored, a
  // number as %.17g (which reads back as the same double). Empty for a name
  // that is not a stored column.
  std::vector<std::pair<int64_t, std::string>> column_values(const std::string& name) const;
};

// Records cross-match links (row_a, row_b, separation in arcsec) in the live
// catalog of the store at dir, in one SQLite transaction, replacing earlier
// links between the same rows. A rebuild keeps the links whose two objects it keeps.
struct RowLink {
  int64_t row_a, row_b;
  double sep_arcsec;
};
void link_objects(const std::string& dir, const std::vector<RowLink>& links);

// The default space of `modality` among `spaces` when none is recorded: its
// newest model space (latest `created`, then the greatest name), else its
// baseline space; "" when none has that modality. A newly built model space
// thus becomes its modality's default.
std::string default_space_by_rule(const std::vector<SpaceInfo>& spaces, const std::string& modality);

// Records `space` as the default space of its modality in the live catalog of
// the store at dir, in one SQLite transaction under the store's lock (a build
// in progress refuses it); later builds keep it while the space exists.
// modality "" means the space's own; another than the space's is refused.
// Throws NotFound for an unknown space.
void set_default_space(const std::string& dir, const std::string& modality, const std::string& space);

// Catalog entry for one new object, before it has a row.
struct NewObject {
  std::string object_id, survey, subset;
  double ra = 0, dec = 0;
  int64_t healpix = -1, hpx_fine = -1;
  int64_t file_id = -1, index_in_file = -1;
  Modality modality = Modality::kNone;
};

// The right to write a store: an exclusive lock on its LOCK file, which names
// the holder's pid while held. Creates the store folder if missing (and removes
// it again if nothing was committed into it). Throws InvalidArgument naming the
// holder's pid when another process writes the store, unless `wait`, which
// blocks until it is done.
class StoreLock {
 public:
  explicit StoreLock(const std::string& dir, bool wait = false);
  ~StoreLock();
  StoreLock(const StoreLock&) = delete;
  StoreLock& operator=(const StoreLock&) = delete;

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// Writes a new generation of the store. Nothing is visible to readers until
// commit(); destroying an uncommitted writer removes its files. One writer per
// store at a time: it adopts `held`, taken earlier by the caller so that the
// whole job is covered, or takes the lock itself.
class StoreWriter {
 public:
  explicit StoreWriter(const std::string& dir, std::unique_ptr<StoreLock> held = nullptr);
  ~StoreWriter();
  StoreWriter(const StoreWriter&) = delete;
  StoreWriter& operator=(const StoreWriter&) = delete;

  int64_t add_file(const SourceFile& f, Modality m, int64_t n_objects);
  // Appends objects; returns the row of the first (rows are consecutive).
  int64_t add_objects(const std::vector<NewObject>& objects);
  // Catalog values of one column for objects already added: rows[i] is the
  // store row of the column's file row i. Values an object lacks are skipped.
  void add_values(const std::vector<int64_t>& rows, const ScalarColumn& column);
  // vectors: rows.size() x info.dim floats, row i belongs to catalog rows[i].
  void add_space(const SpaceInfo& info, const std::vector<int64_t>& rows, const float* vectors,
                 const std::string& fit_blob);
  // The same, chunk by chunk (a merge): next(rows, vectors) fills the next
  // chunk, rows ascending across chunks, and returns false when there is no
  // more. Only a chunk and the rows (8 bytes a vector) are held in memory.
  void add_space_streamed(const SpaceInfo& info, const std::string& fit_blob,
                          const std::function<bool(std::vector<int64_t>*, std::vector<float>*)>& next);
  // A key of the catalog's meta table (provenance such as "merged_from").
  void set_meta(const std::string& key, const std::string& value);
  // Carries space `name` of `old` into the new generation unchanged (files
  // hard-linked). REQUIRES: the new catalog rows equal the old ones.
  void copy_space(const Store& old, const std::string& name);
  // Copies file `f` of `old` with its objects and catalog values, unchanged
  // but for their rows (consecutive from the next free row, returned).
  int64_t copy_file(const Store& old, const StoredFile& f);
  // Copies the cross-match links of `old` whose two rows both map to new rows
  // (map_row returns -1 for a row that is gone).
  void copy_links(const Store& old, const std::function<int64_t(int64_t)>& map_row);
  // Records the default space of a modality (Store::default_space); chosen:
  // the user's choice, which later builds keep, rather than the rule's.
  void set_default_space(const std::string& modality, const std::string& space, bool chosen);
  // Whether space `name` has been added or copied. Modalities without a
  // default when commit() runs get default_space_by_rule's.
  bool has_space(const std::string& name) const;
  void commit();

 private:
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

}  // namespace mmu
