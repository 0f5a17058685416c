#include "read/hdf5_util.h"

#include <H5Zpublic.h>
#include <omp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>

#include "base/fresh_buffer.h"
#include "mmu/error.h"

namespace mmu {
void register_lzf_filter();  // lzf_filter.cpp
}

namespace mmu::h5 {

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    if (valid() && closer_) closer_(id_);
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

Handle::~Handle() {
  if (valid() && closer_) closer_(id_);
}

void init_library() {
  static std::once_flag once;
  std::call_once(once, [] {
    H5open();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    register_lzf_filter();
  });
}

namespace {
herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  // The deepest entry usually says why (e.g. "can't open file", "filter not found").
  if (err->desc && *err->desc) *out = err->desc;
  return 0;
}

TypeClass classify(hid_t type, size_t* size, bool* vlen) {
  *size = H5Tget_size(type);
  *vlen = false;
  switch (H5Tget_class(type)) {
    case H5T_INTEGER:
      return H5Tget_sign(type) == H5T_SGN_NONE ? TypeClass::kUnsignedInteger : TypeClass::kInteger;
    case H5T_FLOAT:
      return TypeClass::kFloat;
    case H5T_STRING:
      *vlen = H5Tis_variable_str(type) > 0;
      return TypeClass::kString;
    case H5T_ENUM: {
      // h5py writes numpy bool as an int8 enum {FALSE, TRUE}.
      if (H5Tget_nmembers(type) == 2 && *size == 1) return TypeClass::kBool;
      return TypeClass::kOther;
    }
    default:
      return TypeClass::kOther;
  }
}

std::string type_text(TypeClass c, size_t size, bool vlen) {
  switch (c) {
    case TypeClass::kInteger: return "int" + std::to_string(8 * size);
    case TypeClass::kUnsignedInteger: return "uint" + std::to_string(8 * size);
    case TypeClass::kFloat: return "float" + std::to_string(8 * size);
    case TypeClass::kString: return vlen ? "string(variable)" : "bytes" + std::to_string(size);
    case TypeClass::kBool: return "bool";
    default: return "other";
  }
}

std::string filter_text(hid_t dset) {
  Handle plist(H5Dget_create_plist(dset), H5Pclose);
  std::string out;
  int n = H5Pget_nfilters(plist.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0;
    size_t nelem = 0;
    char name[64] = {0};
    unsigned config = 0;
    H5Z_filter_t id = H5Pget_filter2(plist.get(), i, &flags, &nelem, nullptr, sizeof(name), name, &config);
    std::string f;
    if (id == H5Z_FILTER_DEFLATE) f = "gzip";
    else if (id == 32000) f = "lzf";
    else if (id == H5Z_FILTER_SHUFFLE) f = "shuffle";
    else if (id == H5Z_FILTER_FLETCHER32) f = "fletcher32";
    else f = "filter" + std::to_string(id);
    out += (out.empty() ? "" : "+") + f;
  }
  return out;
}
// HDF5 says only "required filter (name unavailable)": the filter's id is
// what tells a user which plug-in the file needs ("" when none is missing).
std::string missing_filters(hid_t dset) {
  Handle plist(H5Dget_create_plist(dset), H5Pclose);
  std::string out;
  const int n = H5Pget_nfilters(plist.get());
  for (int i = 0; i < n; ++i) {
    unsigned flags = 0, config = 0;
    size_t nelem = 0;
    char name[64] = {0};
    const H5Z_filter_t id = H5Pget_filter2(plist.get(), static_cast<unsigned>(i), &flags, &nelem, nullptr,
                                           sizeof(name), name, &config);
    if (id < 0 || H5Zfilter_avail(id) > 0) continue;
    out += (out.empty() ? "" : ", ") + std::string("id ") + std::to_string(id) + (*name ? " ('" + std::string(name) + "')" : "");
  }
  H5Eclear2(H5E_DEFAULT);
  return out.empty() ? "" : "; the dataset needs HDF5 filter " + out + ", which this build cannot decode";
}
}  // namespace

std::string last_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

Handle open_file(const std::string& path) {
  init_library();
  // HDF5's error printing is per thread in thread-safe builds: silence it on
  // every thread that opens files (the model stage reads on its own thread).
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    H5Eclear2(H5E_DEFAULT);
    throw FormatError("'" + path + "' is not an HDF5 file (no HDF5 signature, or truncated)");
  }
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) throw FormatError("cannot open HDF5 file '" + path + "': " + last_error());
  return Handle(f, H5Fclose);
}

std::string file_name(hid_t object) {
  char path[4096] = "?";
  if (H5Fget_name(object, path, sizeof(path)) < 0) H5Eclear2(H5E_DEFAULT);
  return path;
}

bool has_dataset(hid_t file, const std::string& name) {
  if (H5Lexists(file, name.c_str(), H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  H5O_info_t oinfo;
  if (H5Oget_info_by_name(file, name.c_str(), &oinfo, H5P_DEFAULT) < 0) {
    // The name exists but its object cannot be read: damage, not absence.
    const std::string why = last_error();
    throw FormatError("cannot read the header of dataset '" + name + "' in '" + file_name(file) + "': " + why);
  }
  return oinfo.type == H5O_TYPE_DATASET;
}

namespace {
herr_t visit_cb(hid_t, const char* name, const H5O_info_t* info, void* data) {
  if (info->type == H5O_TYPE_DATASET) static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> list_datasets(hid_t file) {
  std::vector<std::string> out;
  if (H5Ovisit(file, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &out) < 0) {
    const std::string why = last_error();
    throw FormatError("cannot list the datasets of '" + file_name(file) + "': " + why);
  }
  return out;
}

namespace {
herr_t group_cb(hid_t loc, const char* name, const H5L_info_t*, void* data) {
  H5O_info_t info;
  if (H5Oget_info_by_name(loc, name, &info, H5P_DEFAULT) >= 0 && info.type == H5O_TYPE_GROUP)
    static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> list_root_groups(hid_t file) {
  std::vector<std::string> out;
  hsize_t idx = 0;
  if (H5Literate(file, H5_INDEX_NAME, H5_ITER_INC, &idx, group_cb, &out) < 0) {
    const std::string why = last_error();
    throw FormatError("cannot list the groups of '" + file_name(file) + "': " + why);
  }
  return out;
}

Dataset::Dataset(hid_t file, const std::string& file_path, const std::string& name) : file_path_(file_path) {
  info_.name = name;
  hid_t d = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (d < 0) throw FormatError("cannot open " + where() + ": " + last_error());
  dset_ = Handle(d, H5Dclose);
  Handle space(H5Dget_space(d), H5Sclose);
  int rank = H5Sget_simple_extent_ndims(space.get());
  if (rank < 0) throw FormatError("cannot read the shape of " + where() + ": " + last_error());
  std::vector<hsize_t> dims(rank);
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  for (hsize_t v : dims) info_.dims.push_back(static_cast<int64_t>(v));
  Handle type(H5Dget_type(d), H5Tclose);
  info_.type = classify(type.get(), &info_.type_size, &info_.variable_string);
  info_.type_text = type_text(info_.type, info_.type_size, info_.variable_string);
  info_.filters = filter_text(d);
  check_extent(file);
}

// A damaged or hostile header can declare 10^12 rows in a 59 KB file: every
// reader sizes its buffers from the shape, so the shape is checked against
// what the file can hold before anything is allocated.
void Dataset::check_extent(hid_t file) const {
  std::string shape;
  for (int64_t v : info_.dims) shape += (shape.empty() ? "(" : ", ") + std::to_string(v);
  shape = info_.dims.empty() ? "()" : shape + ")";
  // Products in long double: 32 dims of 2^63 must not wrap around to a small number.
  long double elements = 1;
  for (int64_t v : info_.dims) elements *= static_cast<long double>(v);
  if (elements > static_cast<long double>(kMaxElements))
    throw FormatError(where() + " declares shape " + shape + ", more than " + std::to_string(kMaxElements) +
                      " values: a damaged header or not an MMU file");
  hsize_t file_size = 0;
  {
    Handle fid(H5Iget_file_id(file), H5Fclose);
    if (!fid.valid() || H5Fget_filesize(fid.get(), &file_size) < 0)
      throw FormatError("cannot read the size of '" + file_path_ + "': " + last_error());
  }
  // Compression shrinks data at most ~1000-fold (deflate's limit is 1032:1);
  // uncompressed data must fit in the file itself.
  const long double declared = elements * static_cast<long double>(info_.type_size);
  const long double ratio = info_.filters.empty() ? 1.0L : 1100.0L;
  const long double room = static_cast<long double>(file_size) * ratio + 4096.0L;
  if (declared > room)
    throw FormatError(where() + " declares shape " + shape + " of " + info_.type_text + " (" +
                      std::to_string(static_cast<double>(declared) / 1e6) + " MB), more than a file of " +
                      std::to_string(file_size) + " bytes can hold" + (info_.filters.empty() ? "" : " compressed") +
                      ": a damaged header or a truncated file");
}

std::string Dataset::where() const { return "dataset '" + info_.name + "' in '" + file_path_ + "'"; }

std::vector<int64_t> Dataset::row_shape() const {
  if (one_row_ || info_.dims.empty()) return info_.dims;
  return std::vector<int64_t>(info_.dims.begin() + 1, info_.dims.end());
}

int64_t Dataset::row_size() const {
  int64_t n = 1;
  for (int64_t v : row_shape()) n *= v;
  return n;
}

int64_t Dataset::field_width(const std::string& field) const {
  Handle ftype(H5Dget_type(dset_.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_COMPOUND) return -1;
  const int idx = H5Tget_member_index(ftype.get(), field.c_str());
  if (idx < 0) return -1;
  Handle member(H5Tget_member_type(ftype.get(), idx), H5Tclose);
  if (H5Tget_class(member.get()) != H5T_ARRAY) return 1;
  const int nd = H5Tget_array_ndims(member.get());
  std::vector<hsize_t> dims(nd > 0 ? nd : 1);
  H5Tget_array_dims2(member.get(), dims.data());
  int64_t n = 1;
  for (int i = 0; i < nd; ++i) n *= static_cast<int64_t>(dims[i]);
  return n;
}

void Dataset::read_field(const std::string& field, int64_t width, int64_t start, int64_t count, float* out) const {
  Handle ftype(H5Dget_type(dset_.get()), H5Tclose);
  if (H5Tget_class(ftype.get()) != H5T_COMPOUND) throw FormatError(where() + " is not a compound (table) dataset");
  const int idx = H5Tget_member_index(ftype.get(), field.c_str());
  if (idx < 0) throw FormatError(where() + " has no field '" + field + "'");
  Handle mtype(H5Tcreate(H5T_COMPOUND, sizeof(float) * width), H5Tclose);
  if (width == 1) {
    H5Tinsert(mtype.get(), field.c_str(), 0, H5T_NATIVE_FLOAT);
  } else {
    Handle member(H5Tget_member_type(ftype.get(), idx), H5Tclose);
    const int64_t n = field_width(field);
    if (n != width)
      throw FormatError(where() + ": field '" + field + "' has " + std::to_string(n) + " values per row, expected " +
                        std::to_string(width));
    const hsize_t dims[1] = {static_cast<hsize_t>(width)};
    Handle arr(H5Tarray_create2(H5T_NATIVE_FLOAT, 1, dims), H5Tclose);
    H5Tinsert(mtype.get(), field.c_str(), 0, arr.get());
  }
  read_raw(start, count, mtype.get(), out);
}

void Dataset::read_raw(int64_t start, int64_t count, hid_t mem_type, void* out) const {
  if (count <= 0) return;
  Handle fspace(H5Dget_space(dset_.get()), H5Sclose);
  if (info_.dims.empty() || one_row_) {
    if (start != 0 || count != 1) throw InternalError("single-object " + where() + " read as rows");
    if (H5Dread(dset_.get(), mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) {
      const std::string why = last_error();
      throw FormatError("cannot read " + where() + ": " + why + missing_filters(dset_.get()));
    }
    return;
  }
  const size_t rank = info_.dims.size();
  std::vector<hsize_t> off(rank, 0), cnt(rank);
  off[0] = static_cast<hsize_t>(start);
  cnt[0] = static_cast<hsize_t>(count);
  for (size_t i = 1; i < rank; ++i) cnt[i] = static_cast<hsize_t>(info_.dims[i]);
  H5Sselect_hyperslab(fspace.get(), H5S_SELECT_SET, off.data(), nullptr, cnt.data(), nullptr);
  Handle mspace(H5Screate_simple(static_cast<int>(rank), cnt.data(), nullptr), H5Sclose);
  if (H5Dread(dset_.get(), mem_type, mspace.get(), fspace.get(), H5P_DEFAULT, out) < 0) {
    std::string why = last_error();
    throw FormatError("cannot read rows " + std::to_string(start) + ".." + std::to_string(start + count) +
                      " of " + where() + ": " + (why.empty() ? "read failed (truncated or corrupt file?)" : why) +
                      missing_filters(dset_.get()));
  }
}

std::optional<RawRows> Dataset::raw_rows(int64_t start, int64_t count, hid_t mem_type) const {
  if (one_row_ || info_.dims.empty() || start < 0 || count <= 0 || start + count > info_.dims[0]) return std::nullopt;
  Handle dcpl(H5Dget_create_plist(dset_.get()), H5Pclose);
  if (!dcpl.valid() || H5Pget_layout(dcpl.get()) != H5D_CONTIGUOUS || H5Pget_external_count(dcpl.get()) != 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  Handle type(H5Dget_type(dset_.get()), H5Tclose);
  if (!type.valid() || H5Tequal(type.get(), mem_type) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  const haddr_t address = H5Dget_offset(dset_.get());
  Handle file(H5Iget_file_id(dset_.get()), H5Fclose);
  Handle fcpl(file.valid() ? H5Fget_create_plist(file.get()) : H5I_INVALID_HID, H5Pclose);
  Handle fapl(file.valid() ? H5Fget_access_plist(file.get()) : H5I_INVALID_HID, H5Pclose);
  hsize_t user_block = 1;
  void* handle = nullptr;
  if (address == HADDR_UNDEF || !fcpl.valid() || !fapl.valid() || H5Pget_userblock(fcpl.get(), &user_block) < 0 ||
      user_block != 0 || H5Pget_driver(fapl.get()) != H5FD_SEC2 ||
      H5Fget_vfd_handle(file.get(), fapl.get(), &handle) < 0 || handle == nullptr) {
    H5Eclear2(H5E_DEFAULT);
    return std::nullopt;
  }
  const int fd = *static_cast<int*>(handle);
  const auto row_bytes = static_cast<int64_t>(row_size()) * static_cast<int64_t>(info_.type_size);
  const int64_t offset = static_cast<int64_t>(address) + start * row_bytes, bytes = count * row_bytes;
  struct stat st {};
  if (fstat(fd, &st) != 0 || offset + bytes > static_cast<int64_t>(st.st_size)) return std::nullopt;
  return RawRows{fd, offset, static_cast<size_t>(bytes)};
}

void read_raw_in_parallel(const std::vector<RawRead>& reads) {
  // Pieces of 1 MB: a few dozen per column, so both threads stay busy to the end.
  constexpr size_t kPiece = size_t{1} << 20;
  struct Piece {
    size_t read;
    size_t begin, end;  // bytes of the run
  };
  std::vector<Piece> pieces;
  for (size_t k = 0; k < reads.size(); ++k)
    for (size_t b = 0; b < reads[k].rows.bytes; b += kPiece)
      pieces.push_back({k, b, std::min(reads[k].rows.bytes, b + kPiece)});
  // The first failure is kept and thrown after the region.
  std::exception_ptr failed;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t p = 0; p < pieces.size(); ++p) {
    const RawRead& r = reads[pieces[p].read];
    char* to = static_cast<char*>(r.to) + pieces[p].begin;
    size_t at = pieces[p].begin;
    populate(to, pieces[p].end - at);
    try {
      while (at < pieces[p].end) {
        const ssize_t n = ::pread(r.rows.fd, to, pieces[p].end - at, static_cast<off_t>(r.rows.offset + at));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw Error(ErrorKind::kIo, "cannot read " + r.where + ": " + std::strerror(errno));
        if (n == 0)
          throw FormatError("cannot read " + r.where + ": the file ends at byte " +
                            std::to_string(r.rows.offset + static_cast<int64_t>(at)) + ", inside its data (truncated?)");
        at += static_cast<size_t>(n);
        to += n;
      }
    } catch (...) {
#pragma omp critical(mmu_read_raw_failed)
      if (!failed) failed = std::current_exception();
    }
  }
  if (failed) std::rethrow_exception(failed);
}

void Dataset::read_rows(int64_t start, int64_t count, float* out) const {
  read_raw(start, count, H5T_NATIVE_FLOAT, out);
}
void Dataset::read_rows(int64_t start, int64_t count, double* out) const {
  read_raw(start, count, H5T_NATIVE_DOUBLE, out);
}
void Dataset::read_rows(int64_t start, int64_t count, int64_t* out) const {
  read_raw(start, count, H5T_NATIVE_INT64, out);
}
void Dataset::read_rows(int64_t start, int64_t count, uint64_t* out) const {
  read_raw(start, count, H5T_NATIVE_UINT64, out);
}

void Dataset::read_rows_bool(int64_t start, int64_t count, uint8_t* out) const {
  if (info_.type == TypeClass::kBool) {
    // Read the enum in its own (1-byte) memory form: HDF5 cannot convert enum -> int.
    Handle ftype(H5Dget_type(dset_.get()), H5Tclose);
    Handle mtype(H5Tget_native_type(ftype.get(), H5T_DIR_ASCEND), H5Tclose);
    read_raw(start, count, mtype.get(), out);
  } else if (info_.type == TypeClass::kInteger || info_.type == TypeClass::kUnsignedInteger) {
    read_raw(start, count, H5T_NATIVE_UINT8, out);
  } else {
    throw FormatError(where() + " has type " + info_.type_text + ", expected bool or integer");
  }
  const int64_t n = count * row_size();
  for (int64_t i = 0; i < n; ++i) out[i] = out[i] != 0;
}

namespace {
std::string trim_id(const char* p, size_t n) {
  size_t len = 0;
  while (len < n && p[len] != '\0') ++len;
  while (len > 0 && (p[len - 1] == ' ')) --len;
  return std::string(p, len);
}
}  // namespace

std::vector<std::string> Dataset::read_text(int64_t start, int64_t count) const {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(count));
  const int64_t n = count * row_size();
  // Integer ids become text on all cores: a million of them cost ~30 ms on one.
  if (info_.type == TypeClass::kInteger) {
    std::vector<int64_t> v(static_cast<size_t>(n));
    read_raw(start, count, H5T_NATIVE_INT64, v.data());
    out.resize(v.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = std::to_string(v[i]);
  } else if (info_.type == TypeClass::kUnsignedInteger) {
    std::vector<uint64_t> v(static_cast<size_t>(n));
    read_raw(start, count, H5T_NATIVE_UINT64, v.data());
    out.resize(v.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = std::to_string(v[i]);
  } else if (info_.type == TypeClass::kString && info_.variable_string) {
    std::vector<char*> v(static_cast<size_t>(n), nullptr);
    Handle mtype(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mtype.get(), H5T_VARIABLE);
    Handle ftype(H5Dget_type(dset_.get()), H5Tclose);
    H5Tset_cset(mtype.get(), H5Tget_cset(ftype.get()));
    read_raw(start, count, mtype.get(), v.data());
    for (char* s : v) out.push_back(s ? trim_id(s, std::string(s).size()) : std::string());
    Handle space(H5Screate_simple(1, std::vector<hsize_t>{static_cast<hsize_t>(n)}.data(), nullptr), H5Sclose);
    H5Dvlen_reclaim(mtype.get(), space.get(), H5P_DEFAULT, v.data());
  } else if (info_.type == TypeClass::kString) {
    const size_t w = info_.type_size;
    std::vector<char> buf(static_cast<size_t>(n) * w);
    Handle ftype(H5Dget_type(dset_.get()), H5Tclose);
    Handle mtype(H5Tcopy(ftype.get()), H5Tclose);  // same width and cset: a plain copy
    read_raw(start, count, mtype.get(), buf.data());
    for (int64_t i = 0; i < n; ++i) out.push_back(trim_id(buf.data() + i * w, w));
  } else {
    throw FormatError(where() + " has type " + info_.type_text + ", expected strings or integers");
  }
  return out;
}

std::optional<double> read_number_attr(hid_t file, const std::string& object, const std::string& attr) {
  if (H5Aexists_by_name(file, object.c_str(), attr.c_str(), H5P_DEFAULT) <= 0) return std::nullopt;
  Handle a(H5Aopen_by_name(file, object.c_str(), attr.c_str(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!a.valid()) return std::nullopt;
  Handle type(H5Aget_type(a.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) return std::nullopt;
  Handle space(H5Aget_space(a.get()), H5Sclose);
  if (H5Sget_simple_extent_npoints(space.get()) != 1) return std::nullopt;
  double v = 0;
  if (H5Aread(a.get(), H5T_NATIVE_DOUBLE, &v) < 0) return std::nullopt;
  return v;
}

}  // namespace mmu::h5
