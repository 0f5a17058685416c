#include "mmu/export.h"

#include <dlfcn.h>
#include <fitsio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <type_traits>

#include "base/finite.h"
#include "read/hdf5_util.h"
#include "mmu/error.h"
#include "mmu/npy.h"
#include "mmu/probe.h"
#include "mmu/query.h"
#include "mmu/store.h"
#include "mmu/text.h"
#include "mmu/version.h"

namespace mmu {

namespace fs = std::filesystem;
using text::csv_field;
using text::format_double;

ExportFormat parse_export_format(const std::string& text) {
  if (text == "fits") return ExportFormat::kFits;
  if (text == "hdf5") return ExportFormat::kHdf5;
  if (text == "csv") return ExportFormat::kCsv;
  if (text == "npy") return ExportFormat::kNpy;
  throw InvalidArgument("--format must be fits, hdf5, csv or npy, got '" + text + "'");
}

namespace {

Error io_failure(const std::string& message) { return Error(ErrorKind::kIo, message); }

// A destination written under a hidden temporary name in its own folder (so the
// final rename never crosses file systems) and renamed on commit(); anything
// left uncommitted is removed.
class TempTarget {
 public:
  explicit TempTarget(const std::string& final_path) : final_(final_path) {
    const fs::path p = fs::absolute(final_path);
    tmp_ = (p.parent_path() / ("." + p.filename().string() + ".tmp-" + std::to_string(::getpid()))).string();
  }
  ~TempTarget() {
    if (!committed_) {
      std::error_code ec;
      fs::remove_all(tmp_, ec);
    }
  }
  const std::string& path() const { return tmp_; }
  void commit() {
    std::error_code ec;
    fs::rename(tmp_, final_, ec);
    if (ec) throw io_failure("cannot rename '" + tmp_ + "' to '" + final_ + "': " + ec.message());
    committed_ = true;
  }

 private:
  std::string final_, tmp_;
  bool committed_ = false;
};

// What made the vectors, written into every format that has a header.
struct Provenance {
  SpaceInfo space;
  std::string store, where;
};

// One block of exported rows: catalog rows, vectors (when asked) and predictions.
struct Block {
  std::vector<CatalogRow> rows;
  std::vector<float> vectors;          // rows.size() x dim
  std::vector<double> values;          // regression predictions
  std::vector<std::string> labels;     // classification predictions
};

class Exporter {
 public:
  Exporter(const Store& store, const ExportOptions& o) : store_(store), o_(o) {
    prov_.space = store.space(store.resolve_space_name(o.space));
    prov_.store = store.path();
    prov_.where = o.where;
    if (!o.probe_path.empty()) {
      probe_ = load_probe(o.probe_path);
      if (probe_->space != prov_.space.name || probe_->space_sha256 != prov_.space.sha256)
        throw InvalidArgument("--with-predictions: probe '" + o.probe_path + "' was fitted on space '" + probe_->space +
                              "' (sha256 " + probe_->space_sha256.substr(0, 12) + "), not on '" + prov_.space.name +
                              "' (sha256 " + prov_.space.sha256.substr(0, 12) + ")");
    }
    if (o.block_rows < 1) throw InvalidArgument("export block size must be >= 1");
    if (o.where.empty()) {
      vrows_.resize(static_cast<size_t>(prov_.space.count));
      for (int64_t i = 0; i < prov_.space.count; ++i) vrows_[static_cast<size_t>(i)] = i;
    } else {
      RowFilter f;
      f.where = o.where;
      vrows_ = filtered_vector_rows(store, prov_.space.name, f).value();
    }
    if (vrows_.empty())
      throw InvalidArgument("nothing to export: " +
                            (o.where.empty() ? "space '" + prov_.space.name + "' is empty"
                                             : "--where '" + o.where + "' selects no object of space '" +
                                                   prov_.space.name + "'"));
  }

  const Provenance& provenance() const { return prov_; }
  const std::vector<int64_t>& vrows() const { return vrows_; }
  int64_t dim() const { return prov_.space.dim; }
  bool regression_predictions() const { return probe_ && probe_->task == ProbeTask::kRegression; }
  bool class_predictions() const { return probe_ && probe_->task == ProbeTask::kClassification; }

  // Calls fn with consecutive blocks of `vrows`; vectors are read only when
  // asked (or needed for predictions).
  void for_each_block(const std::vector<int64_t>& vrows, bool with_vectors, const std::function<void(const Block&)>& fn) const {
    Block b;
    const size_t step = static_cast<size_t>(o_.block_rows), dim = static_cast<size_t>(prov_.space.dim);
    for (size_t at = 0; at < vrows.size(); at += step) {
      const std::vector<int64_t> part(vrows.begin() + static_cast<std::ptrdiff_t>(at),
                                      vrows.begin() + static_cast<std::ptrdiff_t>(std::min(vrows.size(), at + step)));
      b.rows = store_.rows(store_.rows_of_vectors(prov_.space.name, part));
      b.vectors.clear();
      b.values.clear();
      b.labels.clear();
      if (with_vectors || probe_) {
        b.vectors = store_.vectors_at(prov_.space.name, part);
        // No format may carry a NaN/Inf out (binary ones would do it silently): only a damaged store has one.
        const int64_t bad = first_non_finite_row(b.vectors.data(), static_cast<int64_t>(part.size()), static_cast<int64_t>(dim));
        if (bad >= 0)
          throw FormatError("store '" + store_.path() + "' is damaged: the " + prov_.space.name + " vector of object '" +
                            b.rows[static_cast<size_t>(bad)].object_id + "' has NaN or Inf values; rebuild it (mmu-index build --refit)");
      }
      if (probe_) {
        for (size_t i = 0; i < part.size(); ++i) {
          const float* x = &b.vectors[i * dim];
          if (probe_->task == ProbeTask::kRegression) b.values.push_back(probe_->predict_value(x));
          else b.labels.push_back(probe_->class_names[static_cast<size_t>(probe_->predict_class(x))]);
        }
      }
      fn(b);
    }
  }

 private:
  const Store& store_;
  const ExportOptions& o_;
  Provenance prov_;
  std::optional<SavedProbe> probe_;
  std::vector<int64_t> vrows_;
};

// stdio with every failure turned into an IoError naming the file.
class OutFile {
 public:
  explicit OutFile(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
    if (!f_) throw io_failure("cannot write '" + path + "': " + std::strerror(errno));
  }
  ~OutFile() {
    if (f_) std::fclose(f_);
  }
  void write(const void* data, size_t size) {
    if (size && std::fwrite(data, 1, size, f_) != size) throw io_failure("cannot write '" + path_ + "': " + std::strerror(errno));
  }
  void write(const std::string& s) { write(s.data(), s.size()); }
  void close() {
    // A pipe (stdout) cannot be fsync'ed: EINVAL there is not a failure.
    const bool ok = std::fflush(f_) == 0 && (::fsync(fileno(f_)) == 0 || errno == EINVAL);
    const bool closed = std::fclose(f_) == 0;
    f_ = nullptr;
    if (!ok || !closed) throw io_failure("cannot write '" + path_ + "': " + std::strerror(errno));
  }

 private:
  std::string path_;
  FILE* f_;
};

void write_csv(const Exporter& ex, const std::string& path, bool with_embedding) {
  OutFile f(path);
  std::string line = "object_id,survey,ra,dec";
  if (ex.regression_predictions() || ex.class_predictions()) line += ",prediction";
  const size_t dim = with_embedding ? static_cast<size_t>(ex.dim()) : 0;
  for (size_t j = 0; j < dim; ++j) line += ",e" + std::to_string(j);
  f.write(line + "\n");
  ex.for_each_block(ex.vrows(), with_embedding, [&](const Block& b) {
    std::string out;
    for (size_t i = 0; i < b.rows.size(); ++i) {
      const CatalogRow& r = b.rows[i];
      // Positions keep 1e-12 deg; float32 embeddings round-trip at 9 digits.
      out += csv_field(r.object_id) + "," + csv_field(r.survey) + "," + format_double("%.15g", r.ra) + "," +
             format_double("%.15g", r.dec);
      if (!b.values.empty()) out += "," + (std::isfinite(b.values[i]) ? format_double("%.9g", b.values[i]) : std::string());
      if (!b.labels.empty()) out += "," + csv_field(b.labels[i]);
      for (size_t j = 0; j < dim; ++j) out += "," + format_double("%.9g", b.vectors[i * dim + j]);
      out += "\n";
    }
    f.write(out);
  });
  f.close();
}

// "dir/emb.npy" -> "dir/emb.ids.txt"
std::string ids_path_of(const std::string& npy_path) {
  fs::path p(npy_path);
  if (p.extension() == ".npy") p.replace_extension();
  return p.string() + ".ids.txt";
}

void write_npy(const Exporter& ex, const std::string& npy_path, const std::string& ids_path) {
  OutFile npy(npy_path), ids(ids_path);
  npy.write(npy_header_f32({static_cast<int64_t>(ex.vrows().size()), ex.dim()}));
  ex.for_each_block(ex.vrows(), true, [&](const Block& b) {
    npy.write(b.vectors.data(), b.vectors.size() * sizeof(float));
    std::string lines;
    for (const CatalogRow& r : b.rows) lines += r.object_id + "\n";
    ids.write(lines);
  });
  npy.close();
  ids.close();
}

// ---- FITS ----

// libcfitsio is loaded when a FITS export runs, not linked: linked, it and the
// curl, GnuTLS and Kerberos libraries it needs cost every mmu-search process
// ~15 ms at start (a cold --like is ~70 ms; docs/BENCHMARKS.md, "Cold start,
// continued"), though only `export --format fits` calls it.
struct Cfitsio {
  decltype(&ffinit) create_file;
  decltype(&ffclos) close_file;
  decltype(&ffcrtb) create_tbl;
  decltype(&ffplsw) write_key_longwarn;
  decltype(&ffpkls) write_key_longstr;
  decltype(&ffpcl) write_col;
  decltype(&ffpcks) write_chksum;
  decltype(&ffgerr) get_errstatus;
  decltype(&ffgmsg) read_errmsg;
};

const Cfitsio& cfitsio() {
  static const Cfitsio c = [] {
    void* lib = dlopen(MMU_CFITSIO_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) throw InvalidArgument(std::string("--format fits needs the CFITSIO library " MMU_CFITSIO_SONAME ": ") + dlerror());
    const auto sym = [lib](auto& slot, const char* name) {
      slot = reinterpret_cast<std::remove_reference_t<decltype(slot)>>(dlsym(lib, name));
      if (!slot) throw InvalidArgument(std::string(MMU_CFITSIO_SONAME " lacks ") + name + ": not the CFITSIO this was built for");
    };
    Cfitsio f{};
    sym(f.create_file, "ffinit");
    sym(f.close_file, "ffclos");
    sym(f.create_tbl, "ffcrtb");
    sym(f.write_key_longwarn, "ffplsw");
    sym(f.write_key_longstr, "ffpkls");
    sym(f.write_col, "ffpcl");
    sym(f.write_chksum, "ffpcks");
    sym(f.get_errstatus, "ffgerr");
    sym(f.read_errmsg, "ffgmsg");
    return f;  // the library stays loaded for the process
  }();
  return c;
}

void fits_check(int status, const std::string& path) {
  if (status == 0) return;
  char text[FLEN_STATUS];
  cfitsio().get_errstatus(status, text);
  char detail[FLEN_ERRMSG] = "";
  cfitsio().read_errmsg(detail);
  throw io_failure("FITS export to '" + path + "': " + text + (detail[0] ? std::string(" (") + detail + ")" : ""));
}

void write_fits(const Exporter& ex, const std::string& path) {
  // Fixed-width string columns need the widest id and survey first.
  size_t id_width = 1, survey_width = 1, label_width = 1;
  ex.for_each_block(ex.vrows(), ex.class_predictions(), [&](const Block& b) {
    for (const CatalogRow& r : b.rows) {
      id_width = std::max(id_width, r.object_id.size());
      survey_width = std::max(survey_width, r.survey.size());
    }
    for (const std::string& l : b.labels) label_width = std::max(label_width, l.size());
  });
  std::vector<std::string> names = {"OBJECT_ID", "SURVEY", "RA", "DEC", "HEALPIX", "EMBEDDING"};
  std::vector<std::string> forms = {std::to_string(id_width) + "A", std::to_string(survey_width) + "A", "D", "D", "K",
                                    std::to_string(ex.dim()) + "E"};
  std::vector<std::string> units = {"", "", "deg", "deg", "", ""};
  if (ex.regression_predictions() || ex.class_predictions()) {
    names.push_back("PREDICTION");
    forms.push_back(ex.class_predictions() ? std::to_string(label_width) + "A" : "D");
    units.push_back("");
  }
  auto cstrs = [](std::vector<std::string>& v) {
    std::vector<char*> p;
    for (auto& s : v) p.push_back(s.data());
    return p;
  };
  auto ttype = cstrs(names), tform = cstrs(forms), tunit = cstrs(units);

  int status = 0;
  fitsfile* f = nullptr;
  cfitsio().create_file(&f, path.c_str(), &status);
  fits_check(status, path);
  std::unique_ptr<fitsfile, void (*)(fitsfile*)> owner(f, [](fitsfile* p) {
    int s = 0;
    cfitsio().close_file(p, &s);
  });
  cfitsio().create_tbl(f, BINARY_TBL, 0, static_cast<int>(names.size()), ttype.data(), tform.data(), tunit.data(),
                  "EMBEDDINGS", &status);
  const Provenance& pv = ex.provenance();
  const std::string version = kVersion;
  cfitsio().write_key_longwarn(f, &status);
  auto key = [&](const char* name, const std::string& value, const char* comment) {
    cfitsio().write_key_longstr(f, name, value.c_str(), comment, &status);
  };
  key("SPACE", pv.space.name, "mmu-search embedding space");
  key("MODALITY", pv.space.modality, "input modality of the space");
  key("MODEL", pv.space.model, "model that made the vectors");
  key("MODELVER", pv.space.version, "model version");
  key("MODELSHA", pv.space.sha256, "SHA-256 of the model file (or baseline fit)");
  key("STORE", pv.store, "mmu-search store exported");
  key("CREATOR", "mmu-search " + version, "program that wrote this file");
  if (!pv.where.empty()) key("WHERE", pv.where, "--where selection");
  fits_check(status, path);

  const size_t dim = static_cast<size_t>(ex.dim());
  LONGLONG first = 1;
  ex.for_each_block(ex.vrows(), true, [&](const Block& b) {
    const LONGLONG n = static_cast<LONGLONG>(b.rows.size());
    std::vector<std::string> ids, surveys, labels = b.labels;
    std::vector<double> ra, dec;
    std::vector<LONGLONG> hpx;
    for (const CatalogRow& r : b.rows) {
      ids.push_back(r.object_id);
      surveys.push_back(r.survey);
      ra.push_back(r.ra);
      dec.push_back(r.dec);
      hpx.push_back(r.healpix);
    }
    auto p_ids = cstrs(ids), p_surveys = cstrs(surveys), p_labels = cstrs(labels);
    cfitsio().write_col(f, TSTRING, 1, first, 1, n, p_ids.data(), &status);
    cfitsio().write_col(f, TSTRING, 2, first, 1, n, p_surveys.data(), &status);
    cfitsio().write_col(f, TDOUBLE, 3, first, 1, n, ra.data(), &status);
    cfitsio().write_col(f, TDOUBLE, 4, first, 1, n, dec.data(), &status);
    cfitsio().write_col(f, TLONGLONG, 5, first, 1, n, hpx.data(), &status);
    cfitsio().write_col(f, TFLOAT, 6, first, 1, n * static_cast<LONGLONG>(dim), const_cast<float*>(b.vectors.data()), &status);
    if (!b.values.empty()) cfitsio().write_col(f, TDOUBLE, 7, first, 1, n, const_cast<double*>(b.values.data()), &status);
    if (!labels.empty()) cfitsio().write_col(f, TSTRING, 7, first, 1, n, p_labels.data(), &status);
    fits_check(status, path);
    first += n;
  });
  cfitsio().write_chksum(f, &status);
  owner.release();
  cfitsio().close_file(f, &status);
  fits_check(status, path);
}

// ---- HDF5 in MMU's layout ----

h5::Handle check_h5(hid_t id, herr_t (*closer)(hid_t), const std::string& what, const std::string& path) {
  if (id < 0) throw io_failure("HDF5 export: cannot " + what + " in '" + path + "': " + h5::last_error());
  return h5::Handle(id, closer);
}

void check_h5(herr_t rc, const std::string& what, const std::string& path) {
  if (rc < 0) throw io_failure("HDF5 export: cannot " + what + " in '" + path + "': " + h5::last_error());
}

void write_text_attribute(hid_t file, const char* name, const std::string& value, const std::string& path) {
  auto type = check_h5(H5Tcopy(H5T_C_S1), H5Tclose, "make a string type", path);
  check_h5(H5Tset_size(type.get(), std::max<size_t>(1, value.size())), "size a string type", path);
  auto space = check_h5(H5Screate(H5S_SCALAR), H5Sclose, "make a dataspace", path);
  auto attr = check_h5(H5Acreate2(file, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose,
                       std::string("create attribute ") + name, path);
  check_h5(H5Awrite(attr.get(), type.get(), value.c_str()), std::string("write attribute ") + name, path);
}

// One cell's file: datasets sized up front, filled block by block.
void write_cell_file(const Exporter& ex, const std::vector<int64_t>& vrows, const std::string& path) {
  // Fixed-width ids (h5py reads them as bytes, the reader as trimmed text).
  size_t id_width = 1, label_width = 1;
  ex.for_each_block(vrows, ex.class_predictions(), [&](const Block& b) {
    for (const CatalogRow& r : b.rows) id_width = std::max(id_width, r.object_id.size());
    for (const std::string& l : b.labels) label_width = std::max(label_width, l.size());
  });
  auto file = check_h5(H5Fcreate(path.c_str(), H5F_ACC_EXCL, H5P_DEFAULT, H5P_DEFAULT), H5Fclose, "create the file", path);
  const hsize_t n = vrows.size(), dim = static_cast<hsize_t>(ex.dim());
  auto string_type = [&](size_t width) {
    auto t = check_h5(H5Tcopy(H5T_C_S1), H5Tclose, "make a string type", path);
    check_h5(H5Tset_size(t.get(), width), "size a string type", path);
    return t;
  };
  auto ids_type = string_type(id_width), label_type = string_type(label_width);
  auto make = [&](const char* name, hid_t type, int rank) {
    const hsize_t dims[2] = {n, dim};
    auto space = check_h5(H5Screate_simple(rank, dims, nullptr), H5Sclose, "make a dataspace", path);
    return check_h5(H5Dcreate2(file.get(), name, type, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose,
                    std::string("create dataset ") + name, path);
  };
  auto d_id = make("object_id", ids_type.get(), 1), d_ra = make("ra", H5T_IEEE_F64LE, 1),
       d_dec = make("dec", H5T_IEEE_F64LE, 1), d_hpx = make("healpix", H5T_STD_I64LE, 1),
       d_emb = make("embedding", H5T_IEEE_F32LE, 2);
  std::optional<h5::Handle> d_pred;
  if (ex.regression_predictions()) d_pred = make("prediction", H5T_IEEE_F64LE, 1);
  if (ex.class_predictions()) d_pred = make("prediction", label_type.get(), 1);

  hsize_t at = 0;
  ex.for_each_block(vrows, true, [&](const Block& b) {
    const hsize_t m = b.rows.size();
    auto write = [&](const h5::Handle& d, hid_t mem_type, const void* data, const char* name) {
      const hsize_t start[2] = {at, 0}, count[2] = {m, dim};
      auto fspace = check_h5(H5Dget_space(d.get()), H5Sclose, "get a dataspace", path);
      const int rank = H5Sget_simple_extent_ndims(fspace.get());
      check_h5(H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, start, nullptr, count, nullptr), "select rows", path);
      auto mspace = check_h5(H5Screate_simple(rank, count, nullptr), H5Sclose, "make a dataspace", path);
      check_h5(H5Dwrite(d.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, data), std::string("write ") + name, path);
    };
    std::string ids(m * id_width, '\0'), labels(m * label_width, '\0');
    std::vector<double> ra, dec;
    std::vector<int64_t> hpx;
    for (size_t i = 0; i < m; ++i) {
      const CatalogRow& r = b.rows[i];
      std::memcpy(&ids[i * id_width], r.object_id.data(), r.object_id.size());
      ra.push_back(r.ra);
      dec.push_back(r.dec);
      hpx.push_back(r.healpix);
    }
    for (size_t i = 0; i < b.labels.size(); ++i) std::memcpy(&labels[i * label_width], b.labels[i].data(), b.labels[i].size());
    write(d_id, ids_type.get(), ids.data(), "object_id");
    write(d_ra, H5T_NATIVE_DOUBLE, ra.data(), "ra");
    write(d_dec, H5T_NATIVE_DOUBLE, dec.data(), "dec");
    write(d_hpx, H5T_NATIVE_INT64, hpx.data(), "healpix");
    write(d_emb, H5T_NATIVE_FLOAT, b.vectors.data(), "embedding");
    if (!b.values.empty()) write(*d_pred, H5T_NATIVE_DOUBLE, b.values.data(), "prediction");
    if (!b.labels.empty()) write(*d_pred, label_type.get(), labels.data(), "prediction");
    at += m;
  });
  const Provenance& pv = ex.provenance();
  write_text_attribute(file.get(), "space", pv.space.name, path);
  write_text_attribute(file.get(), "modality", pv.space.modality, path);
  write_text_attribute(file.get(), "model", pv.space.model, path);
  write_text_attribute(file.get(), "model_version", pv.space.version, path);
  write_text_attribute(file.get(), "model_sha256", pv.space.sha256, path);
  write_text_attribute(file.get(), "store", pv.store, path);
  write_text_attribute(file.get(), "creator", std::string("mmu-search ") + kVersion, path);
  if (!pv.where.empty()) write_text_attribute(file.get(), "where", pv.where, path);
  check_h5(H5Fflush(file.get(), H5F_SCOPE_GLOBAL), "flush", path);
}

void write_hdf5_tree(const Exporter& ex, const std::string& root) {
  h5::init_library();
  // Only the vector rows of each cell are held, never their vectors.
  std::map<int64_t, std::vector<int64_t>> cells;
  size_t i = 0;
  ex.for_each_block(ex.vrows(), false, [&](const Block& b) {
    for (const CatalogRow& r : b.rows) cells[r.healpix].push_back(ex.vrows()[i++]);
  });
  for (const auto& [cell, vrows] : cells) {
    const fs::path dir = fs::path(root) / ex.provenance().space.name / ("healpix=" + std::to_string(cell));
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw io_failure("cannot create folder '" + dir.string() + "': " + ec.message());
    write_cell_file(ex, vrows, (dir / "001-of-001.hdf5").string());
  }
}

}  // namespace

ExportSummary export_space(const Store& store, const ExportOptions& o) {
  if (o.out.empty()) throw InvalidArgument("export needs --out PATH");
  const Exporter ex(store, o);
  ExportSummary s;
  s.space = ex.provenance().space.name;
  s.rows = static_cast<int64_t>(ex.vrows().size());
  s.dim = ex.dim();
  std::error_code ec;
  switch (o.format) {
    case ExportFormat::kCsv:
      if (o.out == "-") {  // stdout: nothing to rename
        write_csv(ex, "/dev/stdout", o.with_embedding);
        break;
      }
      [[fallthrough]];
    case ExportFormat::kFits: {
      TempTarget t(o.out);
      if (o.format == ExportFormat::kCsv) write_csv(ex, t.path(), o.with_embedding);
      else write_fits(ex, t.path());
      t.commit();
      s.files.push_back(o.out);
      break;
    }
    case ExportFormat::kNpy: {
      const std::string ids = ids_path_of(o.out);
      TempTarget npy(o.out), id_list(ids);
      write_npy(ex, npy.path(), id_list.path());
      id_list.commit();
      npy.commit();
      s.files = {o.out, ids};
      break;
    }
    case ExportFormat::kHdf5: {
      if (fs::exists(o.out, ec))
        throw InvalidArgument("--out '" + o.out + "' exists: an HDF5 export writes a new folder (remove it or pick another)");
      TempTarget t(o.out);
      if (!fs::create_directory(t.path(), ec) || ec)
        throw io_failure("cannot create folder '" + t.path() + "': " + (ec ? ec.message() : "exists"));
      write_hdf5_tree(ex, t.path());
      t.commit();
      s.files.push_back(o.out);
      break;
    }
  }
  return s;
}

}  // namespace mmu
