// Durable file operations: everything the store writes goes through here so
// that a crash leaves either the old or the new bytes, never a mix.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace mmu::files {

// Writes data to path via path.tmp + fsync + rename + fsync(dir).
void write_atomic(const std::string& path, const void* data, size_t size);
inline void write_atomic(const std::string& path, const std::string& data) {
  write_atomic(path, data.data(), data.size());
}
std::string read_all(const std::string& path);  // throws NotFound / IoError naming path
void fsync_path(const std::string& path);        // file or directory
void make_dirs(const std::string& path);

// Read-only memory map of a whole file; unmapped on destruction. The file
// stays open so that a one-shot reader can copy parts with read_at instead:
// no page-table work, which costs more than the copy when the page cache
// holds the file in 4 KB folios (docs/BENCHMARKS.md, "Cold start").
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const void* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

  // Copies n bytes at offset into out (pread; thread-safe). Throws FormatError
  // naming the file when it ends early (truncated since it was opened), IoError on a read error.
  void read_at(size_t offset, void* out, size_t n) const;
  // Throws FormatError naming the file when its size or modification time
  // differ from when it was opened: it was rewritten in place (builds write
  // new files and never do), so bytes read from it may be a mix. Not the
  // change time: hard-linking the file into a new generation changes that.
  void check_unchanged() const;

 private:
  std::string path_;
  int fd_ = -1;
  void* data_ = nullptr;
  size_t size_ = 0;
  int64_t mtime_ns_ = 0;
};

// An exclusive advisory lock (flock) on path, created if missing, held until
// destruction; while held the file holds the holder's process id, so a refusal
// can name it. Throws InvalidArgument saying `holder` and that pid when another
// process has the lock, unless `wait`, which blocks until it is free.
class FileLock {
 public:
  FileLock(const std::string& path, const std::string& holder, bool wait = false);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// A non-blocking advisory lock (flock) on one file, shared or exclusive, held
// until destruction. Readers pin a store generation with a shared one; the
// builder deletes a generation only under an exclusive one.
class TryLock {
 public:
  enum class Outcome {
    kHeld,      // the lock is ours
    kBusy,      // another holder's lock conflicts
    kMissing,   // path (or, with create, its folder) does not exist
    kReadOnly,  // with create: the file is missing and may not be created here
  };
  // Takes the lock on path without waiting; with `create`, makes the file
  // when missing. Sets *held only for kHeld. Throws IoError naming path for
  // any other failure.
  static Outcome take(const std::string& path, bool exclusive, bool create, std::unique_ptr<TryLock>* held);
  ~TryLock();
  TryLock(const TryLock&) = delete;
  TryLock& operator=(const TryLock&) = delete;

  // Whether path still names the locked file: false once it was renamed,
  // unlinked or replaced, when the lock no longer stands for what lies there.
  bool still_at(const std::string& path) const;

 private:
  explicit TryLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace mmu::files
