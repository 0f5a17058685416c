// Rows written into a closed HDF5 file at their datasets' byte offsets
// (contiguous storage placed at creation), on a thread of their own, so that
// the serial HDF5 library's one thread keeps reading. Private to mmu_core.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "mmu/bounded_queue.h"
#include "mmu/error.h"

namespace mmu::pairs {

// Writes rows into a closed cell file at their byte offsets, on its own
// thread, in the order given; errors are reported by finish().
class RowWriter {
 public:
  struct Run {
    uint64_t file_offset;
    size_t from, size;  // bytes of Job::bytes
  };
  struct Job {
    std::unique_ptr<char[]> bytes;
    std::vector<Run> runs;
  };

  explicit RowWriter(std::string path) : path_(std::move(path)), jobs_(4) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd_ < 0) throw IoError(path_, "open for writing", errno);
    thread_ = std::thread([this] { run(); });
  }
  ~RowWriter() {
    jobs_.close();
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) ::close(fd_);
  }

  // Blocks while four jobs wait: memory stays bounded.
  void push(Job job) {
    if (!jobs_.push(std::move(job))) throw IoError(path_, "write", error_);
  }

  // Waits for every write; throws the first error.
  void finish() {
    jobs_.close();
    thread_.join();
    const int fd = fd_;
    fd_ = -1;
    // On disk before it is renamed into place: after a power loss a whole-looking
    // cell could otherwise hold rows of zeros.
    if (error_ == 0 && ::fsync(fd) != 0) error_ = errno;
    if (::close(fd) != 0 && error_ == 0) error_ = errno;
    if (error_ != 0) throw IoError(path_, "write", error_);
  }

 private:
  void run() {
    while (auto job = jobs_.pop()) {
      for (const Run& r : job->runs)
        for (size_t done = 0; done < r.size && error_ == 0;) {
          const ssize_t n = ::pwrite(fd_, job->bytes.get() + r.from + done, r.size - done,
                                     static_cast<off_t>(r.file_offset + done));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) error_ = n < 0 ? errno : EIO;
          else done += static_cast<size_t>(n);
        }
      if (error_ != 0) jobs_.close();  // push() then fails and reports it
    }
  }

  std::string path_;
  int fd_ = -1;
  std::atomic<int> error_{0};
  BoundedQueue<Job> jobs_;
  std::thread thread_;
};

}  // namespace mmu::pairs
