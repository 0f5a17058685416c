#include "base/file_util.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <iostream>

#include "mmu/error.h"

namespace mmu::files {

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw IoError(path, "open for fsync", errno);
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  if (rc != 0) throw IoError(path, "fsync", err);
}

void write_atomic(const std::string& path, const void* data, size_t size) {
  const std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw IoError(tmp, "create", errno);
  const char* p = static_cast<const char*>(data);
  size_t left = size;
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      throw IoError(tmp, "write", err);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(tmp, "flush", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw IoError(path, "rename into place", err);
  }
  fsync_path(std::filesystem::path(path).parent_path().string());
}

std::string read_all(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) {
    if (errno == ENOENT) throw NotFound("'" + path + "' does not exist");
    throw IoError(path, "open", errno);
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::close(fd);
      throw IoError(path, "read", err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

void make_dirs(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw IoError(path, "create directory", ec.value());
}

namespace {

int64_t nanoseconds(const struct timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1000000000 + t.tv_nsec; }

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw IoError(path, "open", errno);
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    int err = errno;
    ::close(fd_);
    throw IoError(path, "stat", err);
  }
  size_ = static_cast<size_t>(st.st_size);
  mtime_ns_ = nanoseconds(st.st_mtim);
  if (size_ > 0) {
    data_ = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd_, 0);
    if (data_ == MAP_FAILED) {
      int err = errno;
      ::close(fd_);
      data_ = nullptr;
      throw IoError(path, "memory-map", err);
    }
  }
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
}

void MappedFile::read_at(size_t offset, void* out, size_t n) const {
  auto* p = static_cast<char*>(out);
  size_t done = 0;
  while (done < n) {
    const ssize_t got = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (got < 0) {
      if (errno == EINTR) continue;
      throw IoError(path_, "read", errno);
    }
    if (got == 0)
      throw FormatError("'" + path_ + "' ends at byte " + std::to_string(offset + done) + ", though it had " +
                        std::to_string(size_) + " bytes when opened: it was truncated while being read");
    done += static_cast<size_t>(got);
  }
}

void MappedFile::check_unchanged() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) throw IoError(path_, "stat", errno);
  if (static_cast<size_t>(st.st_size) != size_ ||
      nanoseconds(st.st_mtim) != mtime_ns_)
    throw FormatError("'" + path_ + "' was changed while being read (its size or modification time differs from " +
                      "when it was opened): no answer is given from it; run the query again");
}

namespace {

// The pid a lock holder wrote into its lock file, or "" when unreadable.
std::string lock_holder_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  std::string pid;
  for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) pid += buf[i];
  return pid;
}

}  // namespace

FileLock::FileLock(const std::string& path, const std::string& holder, bool wait) {
  // Retried when the file was replaced between open and flock: a lock on an
  // unlinked file would exclude nobody.
  for (;;) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError(path, "create", errno);
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string pid = lock_holder_pid(fd_);
      if (err != EWOULDBLOCK || !wait) {
        ::close(fd_);
        fd_ = -1;
        if (err != EWOULDBLOCK) throw IoError(path, "lock", err);
        throw InvalidArgument(holder + " (" + (pid.empty() ? std::string("a process") : "process " + pid) +
                              " holds " + path + ")");
      }
      std::cerr << "waiting for " << (pid.empty() ? std::string("another process") : "process " + pid)
                << " to release " << path << "\n";
      if (::flock(fd_, LOCK_EX) != 0) {
        const int err2 = errno;
        ::close(fd_);
        fd_ = -1;
        throw IoError(path, "lock", err2);
      }
    }
    struct stat held {}, named {};
    if (::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
        held.st_dev == named.st_dev)
      break;
    ::close(fd_);
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw IoError(path, "write", err);
  }
}

FileLock::~FileLock() {
  if (fd_ < 0) return;
  // A pid left behind would name a process that no longer holds the lock.
  const int best_effort = ::ftruncate(fd_, 0);
  (void)best_effort;
  ::close(fd_);
}

TryLock::Outcome TryLock::take(const std::string& path, bool exclusive, bool create,
                               std::unique_ptr<TryLock>* held) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT && create) {
    fd = ::open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == EACCES || errno == EROFS || errno == EPERM)) return Outcome::kReadOnly;
  }
  if (fd < 0) {
    if (errno == ENOENT || errno == ENOTDIR) return Outcome::kMissing;
    throw IoError(path, "open", errno);
  }
  if (::flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) return Outcome::kBusy;
    throw IoError(path, "lock", err);
  }
  held->reset(new TryLock(fd));
  return Outcome::kHeld;
}

TryLock::~TryLock() {
  if (fd_ >= 0) ::close(fd_);
}

bool TryLock::still_at(const std::string& path) const {
  struct stat held {}, named {};
  return ::fstat(fd_, &held) == 0 && ::stat(path.c_str(), &named) == 0 && held.st_ino == named.st_ino &&
         held.st_dev == named.st_dev;
}

}  // namespace mmu::files
