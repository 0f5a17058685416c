// RAII over the SQLite C API. Private to mmu_core. Errors name the database.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

namespace mmu::sql {

class Stmt;

class Db {
 public:
  // flags: SQLITE_OPEN_READONLY or SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE.
  Db(const std::string& path, int flags);
  ~Db();
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  void exec(const std::string& sql);
  Stmt prepare(const std::string& sql);
  sqlite3* raw() const { return db_; }
  const std::string& path() const { return path_; }
  [[noreturn]] void fail(const std::string& what) const;

 private:
  sqlite3* db_ = nullptr;
  std::string path_;
};

// One prepared statement. bind() indices start at 1; column() at 0.
class Stmt {
 public:
  Stmt(Db* db, sqlite3_stmt* s) : db_(db), s_(s) {}
  Stmt(Stmt&& o) noexcept : db_(o.db_), s_(o.s_) { o.s_ = nullptr; }
  Stmt(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& bind(int i, int64_t v);
  Stmt& bind(int i, double v);
  Stmt& bind(int i, const std::string& v);
  // Binds column `col` of `from`'s current row as it is (any type, or NULL).
  Stmt& bind_value(int i, const Stmt& from, int col);
  bool step();  // true while a row is available
  void run();   // step to completion, then reset for reuse
  void reset();
  int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  double real(int col) const { return sqlite3_column_double(s_, col); }
  std::string text(int col) const;
  bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }

 private:
  Db* db_;
  sqlite3_stmt* s_;
};

}  // namespace mmu::sql
