// Thin RAII and reading helpers over the HDF5 C API. Private to mmu_core.
// Every failure throws mmu::Error naming the file and dataset.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mmu::h5 {

// Owns one hid_t and closes it with the matching H5*close.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle();
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Silences HDF5's own stderr printing and registers our filters; idempotent.
void init_library();

// The innermost message of the current HDF5 error stack ("" when empty).
std::string last_error();

Handle open_file(const std::string& path);
// The path of the file holding an open object, for messages ("?" if unknown).
std::string file_name(hid_t object);
bool has_dataset(hid_t file, const std::string& name);
// Every dataset in the file, as paths without the leading '/' ("image_array",
// "8485-1901/flux"), in HDF5's name order.
std::vector<std::string> list_datasets(hid_t file);
// Names of the groups directly under the root, in name order.
std::vector<std::string> list_root_groups(hid_t file);

// A numeric attribute `attr` of object `object` ("." for the root) holding
// one value, as double; nullopt when absent, not numeric or not one value.
std::optional<double> read_number_attr(hid_t file, const std::string& object, const std::string& attr);

// Rows of a dataset as raw bytes of its file: `bytes` at `offset` in the file
// open on descriptor `fd` (HDF5's own, valid while the file is open).
struct RawRows {
  int fd;
  int64_t offset;
  size_t bytes;
};

// Reads each run of raw rows into `to`, every thread a share of the bytes:
// the copy from the page cache is most of such a read, and one thread copies
// a few GB/s. Throws FormatError naming `where` when the file ends first,
// IoError on a read error.
struct RawRead {
  RawRows rows;
  void* to;
  std::string where;  // Dataset::where()
};
void read_raw_in_parallel(const std::vector<RawRead>& reads);

enum class TypeClass { kInteger, kUnsignedInteger, kFloat, kString, kBool, kOther };

// Shape, type and storage of one dataset, read once.
struct DatasetInfo {
  std::string name;
  std::vector<int64_t> dims;  // empty for a scalar
  TypeClass type = TypeClass::kOther;
  size_t type_size = 0;
  bool variable_string = false;
  std::string type_text;     // e.g. "float32", "int64", "bytes16", "bool"
  std::string filters;       // e.g. "lzf", "gzip", "" for none
};

class Dataset {
 public:
  Dataset(hid_t file, const std::string& file_path, const std::string& name);
  const DatasetInfo& info() const { return info_; }
  // In per-object files (SN light curves) every dataset describes the one
  // object: treat the whole dataset as a single row.
  void treat_as_one_row() { one_row_ = true; }
  int64_t rows() const { return (one_row_ || info_.dims.empty()) ? 1 : info_.dims[0]; }
  // Shape of one row (dims[1:], or all dims in one-row mode).
  std::vector<int64_t> row_shape() const;
  // Elements per row (product of dims[1:]).
  int64_t row_size() const;
  // Reads rows [start, start+count) converted to the native type of T.
  void read_rows(int64_t start, int64_t count, float* out) const;
  void read_rows(int64_t start, int64_t count, double* out) const;
  void read_rows(int64_t start, int64_t count, int64_t* out) const;
  void read_rows(int64_t start, int64_t count, uint64_t* out) const;
  // Rows [start, start+count) as raw bytes of the file, when reading those
  // gives exactly what read_rows gives for mem_type: storage contiguous and
  // allocated, in no external file, in mem_type's own form (class, size, byte
  // order, sign: no conversion), the file read by the POSIX driver (sec2)
  // with no user block, and the bytes inside the file. nullopt otherwise: a
  // chunked or compressed dataset, another type or byte order, and rows never
  // written (whose fill values HDF5 supplies) go through read_rows.
  std::optional<RawRows> raw_rows(int64_t start, int64_t count, hid_t mem_type) const;
  // Booleans and small integers as 0/1 bytes (nonzero -> 1).
  void read_rows_bool(int64_t start, int64_t count, uint8_t* out) const;
  // Strings (fixed or variable) with trailing NULs/spaces trimmed, or integers
  // printed in decimal: the canonical text form of ids.
  std::vector<std::string> read_text(int64_t start, int64_t count) const;
  std::string where() const;  // "dataset 'x' in 'file'"
  // Compound datasets (MaNGA spaxels): reads field `field` of rows
  // [start, start+count) as float; the field may be an array of `width` values.
  // Throws FormatError naming the field when it is absent or not `width` wide.
  // Values per row of a compound field: 1 for a scalar field, n for an array
  // field, -1 when the dataset is not compound or has no such field.
  int64_t field_width(const std::string& field) const;
  void read_field(const std::string& field, int64_t width, int64_t start, int64_t count, float* out) const;

 private:
  // At most this many values in one dataset (4 TiB of float32: far beyond
  // any MMU partition; the file-size check is the tighter one).
  static constexpr int64_t kMaxElements = int64_t{1} << 40;
  void check_extent(hid_t file) const;
  void read_raw(int64_t start, int64_t count, hid_t mem_type, void* out) const;
  std::string file_path_;
  bool one_row_ = false;
  Handle dset_;
  DatasetInfo info_;
};

}  // namespace mmu::h5
