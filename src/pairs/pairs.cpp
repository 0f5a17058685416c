#include "mmu/pairs.h"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>

#include "mmu/crossmatch.h"
#include "mmu/error.h"
#include "mmu/mmu_files.h"
#include "mmu/progress.h"
#include "mmu/sky.h"
#include "pairs/row_copy.h"
#include "pairs/row_writer.h"

namespace fs = std::filesystem;

namespace mmu {

namespace {

// One side's objects: every file's ids and positions, in discovery order;
// object i is row i - file_start[f] of files[f].
struct Side {
  const char* flag;  // "--left", for messages
  std::vector<SourceFile> files;
  std::vector<int64_t> file_start{0};
  std::vector<MmuFileReader::Columns> roles;  // per file
  std::vector<std::vector<std::string>> bands;  // per file: an image file's band names as the reader settled them
  std::vector<std::string> ids;
  std::vector<double> ra, dec;

  int64_t file_of(int64_t i) const {
    return std::upper_bound(file_start.begin(), file_start.end(), i) - file_start.begin() - 1;
  }
};

Side load_side(const std::string& root, const char* flag) {
  Side s;
  s.flag = flag;
  s.files = discover_files({root});
  if (s.files.empty()) throw NotFound("no *.hdf5 or *.h5 files under '" + root + "' (" + flag + ")");
  for (const SourceFile& f : s.files) {
    MmuFileReader reader(f);
    if (reader.layout() != FileLayout::kRowTable)
      throw FormatError("'" + f.path + "' (" + flag + ") is laid out as " + layout_name(reader.layout()) +
                        ": pairs copies rows of row tables only");
    FileCatalog c = reader.read_catalog(/*with_healpix=*/false);
    for (const std::string& w : c.warnings) std::cerr << "warning: " << w << "\n";
    s.roles.push_back(reader.columns());
    s.bands.push_back(reader.modality() == Modality::kImage ? reader.image_bands().names : std::vector<std::string>{});
    for (const std::string& w : reader.warnings()) std::cerr << "warning: " << w << "\n";
    s.ids.insert(s.ids.end(), std::make_move_iterator(c.ids.begin()), std::make_move_iterator(c.ids.end()));
    s.ra.insert(s.ra.end(), c.ra.begin(), c.ra.end());
    s.dec.insert(s.dec.end(), c.dec.begin(), c.dec.end());
    s.file_start.push_back(static_cast<int64_t>(s.ids.size()));
  }
  return s;
}

// What a run was asked to do, with its inputs as found: a rerun resumes only
// the same run.
std::string run_description(const PairsOptions& o, const Side& l, const Side& r) {
  std::ostringstream d;
  char radius[64];
  std::snprintf(radius, sizeof(radius), "%.17g", o.radius_deg * 3600.0);
  d << "mmu-index pairs\nradius_arcsec " << radius << "\nmode " << (o.all_pairs ? "all" : "nearest") << "\n";
  for (const Side* s : {&l, &r})
    for (const SourceFile& f : s->files)
      d << s->flag << " " << fs::weakly_canonical(f.path).string() << " " << f.size << " " << f.mtime << "\n";
  return d.str();
}

void write_text_atomically(const fs::path& path, const std::string& text) {
  const fs::path tmp = path.string() + ".partial";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    out.flush();
    if (!out) throw IoError(tmp.string(), "write", errno);
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) throw IoError(path.string(), "rename into place", ec.value());
}

// Records the run in <dir>/pairs_run.txt, or checks that it is the one
// recorded there.
void claim_folder(const fs::path& dir, const std::string& description) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw IoError(dir.string(), "create folder", ec.value());
  const fs::path record = dir / "pairs_run.txt";
  if (fs::exists(record)) {
    std::ifstream in(record, std::ios::binary);
    std::stringstream was;
    was << in.rdbuf();
    if (was.str() != description)
      throw InvalidArgument("'" + dir.string() + "' holds pairs of another run (other inputs, --radius or --all; see '" +
                            record.string() + "'): give another --out or --name, or remove it");
    return;
  }
  write_text_atomically(record, description);
}

// An output column and where its bytes come from: a source dataset of one side.
struct OutColumn {
  std::string out_name;
  std::string source_name;
  h5::Handle type;
  std::vector<hsize_t> row_dims;
  size_t row_bytes = 0;
  h5::Handle dataset;  // in the cell file being written, until it is closed
  uint64_t offset = 0;  // where its rows start in that file (contiguous storage)
};

// The output name of each source dataset of a side, from its role: the
// left's under its own names (its id as left_object_id), the right's identity
// and position as right_*, and any other right name the left already took
// prefixed "right_". The source healpix is replaced by the pair's cell.
std::string out_name(const std::string& source, const MmuFileReader::Columns& roles, bool left,
                     const std::set<std::string>& taken) {
  if (source == roles.healpix) return "";
  if (source == roles.id) return left ? "left_object_id" : "right_object_id";
  if (source == roles.ra) return left ? "ra" : "right_ra";
  if (source == roles.dec) return left ? "dec" : "right_dec";
  if (left || !taken.count(source)) return source;
  return "right_" + source;
}

bool same_type(hid_t a, hid_t b) { return H5Tequal(a, b) > 0; }

// Which source file, dataset by dataset, feeds each output column: the first
// file of the side used in a cell fixes the columns; every other file must
// have the same datasets in the same types and row shapes.
class SideColumns {
 public:
  SideColumns(const Side& side, bool left) : side_(side), left_(left) {}

  // The datasets of file f, matched to the columns (fixing them on first use).
  std::vector<pairs::RowDataset>& open(int64_t f, hid_t file, std::vector<OutColumn>* columns,
                                       std::set<std::string>* taken) {
    auto it = open_.find(f);
    if (it != open_.end()) return it->second;
    const SourceFile& src = side_.files[f];
    std::vector<std::string> skipped;
    std::vector<pairs::RowDataset> sets =
        pairs::row_datasets(file, src.path, side_.file_start[f + 1] - side_.file_start[f], &skipped);
    for (const std::string& name : skipped)
      std::cerr << "warning: dataset '" << name << "' in '" << src.path
                << "' has a variable-length type: not copied into the pairs\n";
    std::vector<pairs::RowDataset> kept;
    for (pairs::RowDataset& d : sets)
      if (!out_name(d.name, side_.roles[f], left_, {}).empty()) kept.push_back(std::move(d));
    if (!fixed_) {
      for (const pairs::RowDataset& d : kept) {
        OutColumn c;
        c.out_name = out_name(d.name, side_.roles[f], left_, *taken);
        if (!taken->insert(c.out_name).second)
          throw FormatError("dataset '" + d.name + "' of '" + src.path + "' (" + side_.flag + ") would be written as '" +
                            c.out_name + "', a name already taken in the pairs");
        c.source_name = d.name;
        c.type = h5::Handle(H5Tcopy(d.type.get()), H5Tclose);
        c.row_dims = d.row_dims;
        c.row_bytes = d.row_bytes;
        columns->push_back(std::move(c));
        first_.push_back(columns->size() - 1);
      }
      fixed_from_ = src.path;
      fixed_ = true;
    }
    // In column order; a file that differs is named with the one that fixed them.
    std::vector<pairs::RowDataset> ordered;
    for (size_t k : first_) {
      const OutColumn& c = (*columns)[k];
      auto d = std::find_if(kept.begin(), kept.end(), [&](const pairs::RowDataset& x) { return x.name == c.source_name; });
      if (d == kept.end() || !same_type(d->type.get(), c.type.get()) || d->row_dims != c.row_dims)
        throw FormatError("dataset '" + c.source_name + "' of '" + src.path + "' (" + side_.flag + ") " +
                          (d == kept.end() ? "is missing" : "differs in type or shape") + " where '" + fixed_from_ +
                          "' has it: files paired into one cell must have the same datasets");
      ordered.push_back(std::move(*d));
    }
    if (ordered.size() != kept.size())
      std::cerr << "warning: '" << src.path << "' (" << side_.flag << ") has " << kept.size() - ordered.size()
                << " per-object datasets that '" << fixed_from_ << "' lacks: not copied\n";
    return open_.emplace(f, std::move(ordered)).first->second;
  }

  const std::vector<size_t>& column_index() const { return first_; }

 private:
  const Side& side_;
  bool left_;
  bool fixed_ = false;
  std::string fixed_from_;
  std::vector<size_t> first_;  // indices of this side's columns in the cell's columns
  std::map<int64_t, std::vector<pairs::RowDataset>> open_;
};

// The hidden test hook: MMU_PAIRS_TEST_KILL_IN_CELL=k kills the process
// (SIGKILL, as an operator or the OOM killer would) halfway through writing
// the k-th cell of this run (0-based), so tests can check the resume.
int64_t kill_in_cell() {
  const char* v = std::getenv("MMU_PAIRS_TEST_KILL_IN_CELL");
  return v ? std::atoll(v) : -1;
}

class CellWriter {
 public:
  CellWriter(const PairsOptions& o, const Side& l, const Side& r, const std::vector<MatchPair>& pairs, Progress* p)
      : o_(o), l_(l), r_(r), pairs_(pairs), progress_(p) {}

  // Writes pairs[at[0..n)] (in left order) to path.
  void write(const std::string& path, int64_t cell, const std::vector<int64_t>& at, bool kill_halfway) {
    std::vector<OutColumn> columns;
    std::set<std::string> taken = {"object_id", "healpix", "separation_arcsec"};
    SideColumns left(l_, true), right(r_, false);
    std::map<int64_t, h5::Handle> files;
    auto source = [&](const Side& s, int64_t f) -> hid_t {
      const int64_t key = (&s == &l_ ? 0 : int64_t{1} << 40) + f;
      auto it = files.find(key);
      if (it == files.end()) it = files.emplace(key, h5::open_file(s.files[f].path)).first;
      return it->second.get();
    };
    // The columns are fixed by the first file of each side that the cell uses.
    const MatchPair& first = pairs_[at[0]];
    const int64_t lf0 = l_.file_of(first.left), rf0 = r_.file_of(first.right);
    left.open(lf0, source(l_, lf0), &columns, &taken);
    // Images whose band names come from their survey (no image_band per
    // object) would lose them under the pairs' own dataset name: they are
    // written as image_band, so that this tool's reader names the bands alike.
    std::vector<std::string> bands;
    if (!l_.bands[lf0].empty() && taken.insert("image_band").second) {
      bands = l_.bands[lf0];
      for (const int64_t k : at)
        if (l_.bands[l_.file_of(pairs_[k].left)] != bands)
          throw FormatError("'" + l_.files[l_.file_of(pairs_[k].left)].path + "' and '" + l_.files[lf0].path +
                            "' (--left) name their image bands differently: their pairs cannot share a cell file");
    }
    right.open(rf0, source(r_, rf0), &columns, &taken);

    const hsize_t n = at.size();
    h5::Handle out(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!out.valid()) throw FormatError("cannot create '" + path + "': " + h5::last_error());
    auto create = [&](const std::string& name, hid_t type, const std::vector<hsize_t>& row_dims) {
      std::vector<hsize_t> dims{n};
      dims.insert(dims.end(), row_dims.begin(), row_dims.end());
      h5::Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
      // Every row is written below: no fill value first (it doubled the bytes written).
      // Contiguous, placed now: its rows are then written at their file offset.
      h5::Handle dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
      H5Pset_fill_time(dcpl.get(), H5D_FILL_TIME_NEVER);
      H5Pset_layout(dcpl.get(), H5D_CONTIGUOUS);
      H5Pset_alloc_time(dcpl.get(), H5D_ALLOC_TIME_EARLY);
      h5::Handle d(H5Dcreate2(out.get(), name.c_str(), type, space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT),
                   H5Dclose);
      if (!d.valid()) throw FormatError("cannot create dataset '" + name + "' in '" + path + "': " + h5::last_error());
      return d;
    };
    auto write_all = [&](hid_t d, hid_t type, const void* data, const std::string& name) {
      if (H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        throw FormatError("cannot write dataset '" + name + "' of '" + path + "': " + h5::last_error());
    };

    // What the pair itself adds: its id, cell and separation.
    std::vector<std::string> ids(n);
    size_t width = 1;
    std::vector<double> sep(n);
    for (hsize_t k = 0; k < n; ++k) {
      const MatchPair& p = pairs_[at[k]];
      ids[k] = l_.ids[p.left] + ":" + r_.ids[p.right];
      width = std::max(width, ids[k].size());
      sep[k] = p.sep_arcsec;
    }
    std::vector<char> id_bytes(n * width, '\0');
    for (hsize_t k = 0; k < n; ++k) std::memcpy(id_bytes.data() + k * width, ids[k].data(), ids[k].size());
    h5::Handle id_type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(id_type.get(), width);
    H5Tset_strpad(id_type.get(), H5T_STR_NULLPAD);
    write_all(create("object_id", id_type.get(), {}).get(), id_type.get(), id_bytes.data(), "object_id");
    const std::vector<int64_t> cells(n, cell);
    write_all(create("healpix", H5T_STD_I64LE, {}).get(), H5T_NATIVE_INT64, cells.data(), "healpix");
    write_all(create("separation_arcsec", H5T_IEEE_F64LE, {}).get(), H5T_NATIVE_DOUBLE, sep.data(),
              "separation_arcsec");
    if (!bands.empty()) {
      size_t band_width = 1;
      for (const std::string& b : bands) band_width = std::max(band_width, b.size());
      std::vector<char> band_bytes(n * bands.size() * band_width, '\0');
      for (hsize_t k = 0; k < n; ++k)
        for (size_t b = 0; b < bands.size(); ++b)
          std::memcpy(band_bytes.data() + (k * bands.size() + b) * band_width, bands[b].data(), bands[b].size());
      h5::Handle band_type(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(band_type.get(), band_width);
      H5Tset_strpad(band_type.get(), H5T_STR_NULLPAD);
      write_all(create("image_band", band_type.get(), {static_cast<hsize_t>(bands.size())}).get(), band_type.get(),
                band_bytes.data(), "image_band");
    }
    for (OutColumn& c : columns) {
      c.dataset = create(c.out_name, c.type.get(), c.row_dims);
      const haddr_t at_byte = H5Dget_offset(c.dataset.get());
      if (at_byte == HADDR_UNDEF) throw InternalError("dataset '" + c.out_name + "' of '" + path + "' has no storage");
      c.offset = at_byte;
      c.dataset = h5::Handle();
    }
    // Its structure complete (flushed, checked: a full disk must not pass),
    // the file is closed; the rows go to their offsets from another thread
    // while this one reads the next ones (serial HDF5 allows one thread).
    if (H5Fflush(out.get(), H5F_SCOPE_LOCAL) < 0) throw FormatError("cannot write '" + path + "': " + h5::last_error());
    out = h5::Handle();
    pairs::RowWriter writer(path);
    copy_side(l_, true, at, &left, &columns, source, &writer);
    if (kill_halfway) {
      writer.finish();
      std::raise(SIGKILL);
    }
    copy_side(r_, false, at, &right, &columns, source, &writer);
    writer.finish();
  }

 private:
  // Copies one side's rows of every pair: per source file, in batches of
  // o_.batch_bytes, each distinct source row read once.
  template <typename Source>
  void copy_side(const Side& s, bool is_left, const std::vector<int64_t>& at, SideColumns* side_columns,
                 std::vector<OutColumn>* columns, Source&& source, pairs::RowWriter* writer) {
    // (source file, source row, output row), in source order.
    struct Use {
      int64_t file;
      hsize_t row, out;
    };
    std::vector<Use> uses(at.size());
    for (size_t k = 0; k < at.size(); ++k) {
      const MatchPair& p = pairs_[at[k]];
      const int64_t i = is_left ? p.left : p.right;
      const int64_t f = s.file_of(i);
      uses[k] = {f, static_cast<hsize_t>(i - s.file_start[f]), k};
    }
    std::sort(uses.begin(), uses.end(),
              [](const Use& a, const Use& b) { return a.file != b.file ? a.file < b.file : a.row != b.row ? a.row < b.row : a.out < b.out; });
    size_t row_bytes = 1;
    for (size_t k : side_columns->column_index()) row_bytes += (*columns)[k].row_bytes;
    const size_t batch = std::max<size_t>(1, static_cast<size_t>(o_.batch_bytes) / row_bytes);
    for (size_t b = 0; b < uses.size();) {
      const int64_t f = uses[b].file;
      const std::vector<pairs::RowDataset>& sets = side_columns->open(f, source(s, f), columns, nullptr);
      // A batch: up to `batch` uses of one file.
      size_t e = b;
      while (e < uses.size() && e - b < batch && uses[e].file == f) ++e;
      std::vector<hsize_t> rows;  // distinct, ascending
      std::vector<size_t> slot(e - b);  // use b + j reads rows[slot[j]]
      for (size_t j = b; j < e; ++j) {
        if (rows.empty() || rows.back() != uses[j].row) rows.push_back(uses[j].row);
        slot[j - b] = rows.size() - 1;
      }
      // Output rows ascending, with the row each takes.
      std::vector<std::pair<hsize_t, size_t>> outs(e - b);
      for (size_t j = b; j < e; ++j) outs[j - b] = {uses[j].out, slot[j - b]};
      std::sort(outs.begin(), outs.end());
      const bool in_order = rows.size() == outs.size() &&
                            std::is_sorted(outs.begin(), outs.end(), [](auto& x, auto& y) { return x.second < y.second; });
      const auto& index = side_columns->column_index();
      for (size_t c = 0; c < index.size(); ++c) {
        const OutColumn& col = (*columns)[index[c]];
        pairs::RowWriter::Job job;
        job.bytes.reset(new char[outs.size() * col.row_bytes]);  // not zeroed: every byte is read into
        if (in_order) {
          pairs::read_rows(sets[c], s.files[f].path, rows, job.bytes.get());
        } else {
          std::unique_ptr<char[]> read(new char[rows.size() * col.row_bytes]);
          pairs::read_rows(sets[c], s.files[f].path, rows, read.get());
          for (size_t j = 0; j < outs.size(); ++j)
            std::memcpy(job.bytes.get() + j * col.row_bytes, read.get() + outs[j].second * col.row_bytes, col.row_bytes);
        }
        // One write per run of consecutive output rows.
        for (size_t j = 0; j < outs.size();) {
          size_t k = j + 1;
          while (k < outs.size() && outs[k].first == outs[k - 1].first + 1) ++k;
          job.runs.push_back({col.offset + outs[j].first * col.row_bytes, j * col.row_bytes, (k - j) * col.row_bytes});
          j = k;
        }
        writer->push(std::move(job));
      }
      if (is_left) progress_->add(static_cast<int64_t>(e - b));
      b = e;
    }
  }

  const PairsOptions& o_;
  const Side &l_, &r_;
  const std::vector<MatchPair>& pairs_;
  Progress* progress_;
};

// Refuses an --out inside an input: a rerun would read its own pairs.
void check_out_apart(const fs::path& dir, const std::string& root, const char* flag) {
  const std::string d = fs::weakly_canonical(dir).string() + "/", r = fs::weakly_canonical(root).string() + "/";
  if (d.compare(0, r.size(), r) == 0 || r.compare(0, d.size(), d) == 0)
    throw InvalidArgument("--out '" + dir.string() + "' overlaps " + flag + " '" + root +
                          "': the pairs would be read back as input");
}

}  // namespace

PairsSummary write_pairs(const PairsOptions& o) {
  if (o.out.empty()) throw InvalidArgument("--out is required");
  if (o.name.find('/') != std::string::npos || o.name == "." || o.name == "..")
    throw InvalidArgument("--name '" + o.name + "' must be a plain folder name");
  Side l = load_side(o.left, "--left");
  Side r = load_side(o.right, "--right");
  {
    std::set<std::string> left_files;
    for (const SourceFile& f : l.files) left_files.insert(fs::weakly_canonical(f.path).string());
    for (const SourceFile& f : r.files)
      if (left_files.count(fs::weakly_canonical(f.path).string()))
        throw InvalidArgument("'" + f.path + "' is on both sides (--left and --right): pairs match two surveys");
  }
  const std::string name = o.name.empty() ? l.files[0].dataset + "_x_" + r.files[0].dataset : o.name;
  const fs::path dir = fs::path(o.out) / name;
  check_out_apart(dir, o.left, "--left");
  check_out_apart(dir, o.right, "--right");

  const std::vector<MatchPair> pairs = CrossMatchIndex(r.ra, r.dec, o.radius_deg).match(l.ra, l.dec, o.all_pairs);
  claim_folder(dir, run_description(o, l, r));

  // Pairs by the left object's cell, each cell's in left order.
  std::map<int64_t, std::vector<int64_t>> by_cell;
  for (size_t k = 0; k < pairs.size(); ++k)
    by_cell[healpix_cell(l.ra[pairs[k].left], l.dec[pairs[k].left])].push_back(static_cast<int64_t>(k));

  PairsSummary s;
  s.dataset_dir = dir.string();
  s.pairs = static_cast<int64_t>(pairs.size());
  s.left_objects = static_cast<int64_t>(l.ids.size());
  s.right_objects = static_cast<int64_t>(r.ids.size());
  Progress progress("pairs", s.pairs, o.progress);
  CellWriter writer(o, l, r, pairs, &progress);
  const int64_t kill_at = kill_in_cell();
  for (const auto& [cell, at] : by_cell) {
    const fs::path cell_dir = dir / ("healpix=" + std::to_string(cell));
    const fs::path file = cell_dir / "001-of-001.hdf5";
    if (fs::exists(file)) {  // complete: only a finished cell is renamed into place
      ++s.cells_kept;
      progress.add(static_cast<int64_t>(at.size()));
      continue;
    }
    std::error_code ec;
    fs::create_directories(cell_dir, ec);
    if (ec) throw IoError(cell_dir.string(), "create folder", ec.value());
    const std::string partial = file.string() + ".partial";
    writer.write(partial, cell, at, s.cells_written == kill_at);
    fs::rename(partial, file, ec);
    if (ec) throw IoError(file.string(), "rename into place", ec.value());
    ++s.cells_written;
    s.pairs_written += static_cast<int64_t>(at.size());
  }
  progress.finish();
  return s;
}

}  // namespace mmu
