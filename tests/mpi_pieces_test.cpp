// How mmu-search-mpi cuts messages (mpi/message_pieces.h): at sizes past
// 2^31 bytes every piece fits an MPI int count and the pieces add up to the
// message exactly; MMU_MPI_CHUNK_BYTES is read or refused by name.
#include <catch2/catch.hpp>
#include <climits>
#include <cstdint>
#include <string>
#include <vector>

#include "../mpi/message_pieces.h"

namespace {

using mmu::mpi::kDefaultChunkBytes;

// The pieces as the sender's and receiver's loops walk them.
std::vector<int> walk(int64_t total, int64_t chunk) {
  std::vector<int> out;
  for (int64_t done = 0; done < total; done += out.back()) out.push_back(mmu::mpi::piece_bytes(total, done, chunk));
  return out;
}

}  // namespace

TEST_CASE("MPI messages past 2 GiB go in pieces that fit an int count and add up exactly", "[mpi]") {
  const int64_t two_gib = int64_t{1} << 31;
  for (const int64_t total : {int64_t{0}, int64_t{1}, kDefaultChunkBytes - 1, kDefaultChunkBytes, two_gib - 1,
                              two_gib, two_gib + 1, 5 * two_gib + 12345, int64_t{10'000'000} * 512 * 4}) {
    for (const int64_t chunk : {kDefaultChunkBytes, int64_t{INT_MAX}, int64_t{1000}}) {
      if (chunk == 1000 && total > 100'000'000) continue;  // millions of pieces: the walk is the point, not the size
      const std::vector<int> pieces = walk(total, chunk);
      int64_t sum = 0;
      for (const int p : pieces) {
        REQUIRE(p > 0);
        REQUIRE(p <= chunk);
        sum += p;
      }
      CHECK(sum == total);
      CHECK(static_cast<int64_t>(pieces.size()) == mmu::mpi::piece_count(total, chunk));
      // Only the last piece may be short.
      for (size_t i = 0; i + 1 < pieces.size(); ++i) CHECK(pieces[i] == chunk);
    }
  }
  CHECK(mmu::mpi::piece_count(5 * two_gib + 12345, kDefaultChunkBytes) == 21);  // 5 * 4 whole, one of 12345 bytes
}

TEST_CASE("MMU_MPI_CHUNK_BYTES: unset is 512 MiB, a whole number in [1, INT_MAX] is taken, else refused by name",
          "[mpi]") {
  CHECK(mmu::mpi::parse_chunk_bytes(nullptr) == kDefaultChunkBytes);
  CHECK(mmu::mpi::parse_chunk_bytes("") == kDefaultChunkBytes);
  CHECK(mmu::mpi::parse_chunk_bytes("1") == 1);
  CHECK(mmu::mpi::parse_chunk_bytes("1001") == 1001);
  CHECK(mmu::mpi::parse_chunk_bytes("2147483647") == INT_MAX);
  for (const char* bad : {"0", "-5", "12x", " 12", "2147483648", "99999999999999999999999", "1e6"}) {
    INFO(bad);
    try {
      mmu::mpi::parse_chunk_bytes(bad);
      FAIL("accepted");
    } catch (const mmu::Error& e) {
      CHECK(std::string(e.what()).find(std::string("MMU_MPI_CHUNK_BYTES='") + bad + "'") != std::string::npos);
    }
  }
}
