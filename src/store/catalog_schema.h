// The catalog's SQL schema (catalog.sqlite of each generation).
#pragma once

#include <string>

namespace mmu::schema {

inline constexpr const char* kCreateTables = R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE files(
  id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, dataset TEXT NOT NULL, subset TEXT NOT NULL,
  healpix INTEGER NOT NULL, size INTEGER NOT NULL, mtime INTEGER NOT NULL,
  modality TEXT NOT NULL, n_objects INTEGER NOT NULL);
CREATE TABLE objects(
  row INTEGER PRIMARY KEY, object_id TEXT NOT NULL, survey TEXT NOT NULL, subset TEXT NOT NULL,
  ra REAL NOT NULL, dec REAL NOT NULL, healpix INTEGER NOT NULL, hpx_fine INTEGER NOT NULL,
  file_id INTEGER NOT NULL REFERENCES files(id), index_in_file INTEGER NOT NULL, modality TEXT NOT NULL);
CREATE UNIQUE INDEX objects_by_survey_id ON objects(survey, object_id);
CREATE INDEX objects_by_id ON objects(object_id);
CREATE TABLE spaces(
  name TEXT PRIMARY KEY, modality TEXT NOT NULL, model TEXT NOT NULL, version TEXT NOT NULL,
  dim INTEGER NOT NULL, count INTEGER NOT NULL, created TEXT NOT NULL, sha256 TEXT NOT NULL);
CREATE TABLE space_rows(
  space TEXT NOT NULL REFERENCES spaces(name), vrow INTEGER NOT NULL, row INTEGER NOT NULL,
  PRIMARY KEY(space, vrow)) WITHOUT ROWID;
CREATE UNIQUE INDEX space_rows_by_row ON space_rows(row, space);
CREATE TABLE links(
  row_a INTEGER NOT NULL, row_b INTEGER NOT NULL, sep_arcsec REAL NOT NULL,
  PRIMARY KEY(row_a, row_b)) WITHOUT ROWID;
CREATE INDEX links_by_b ON links(row_b);
-- SHA-256 of each space file as written at build (vectors.f32, fit.bin);
-- checked before a file is trusted (see Store::read_fit, verify_space_files).
-- Stores written before this table existed are not verified.
CREATE TABLE space_files(
  space TEXT NOT NULL, file TEXT NOT NULL, bytes INTEGER NOT NULL, sha256 TEXT NOT NULL,
  PRIMARY KEY(space, file)) WITHOUT ROWID;
-- Per-object scalar catalog columns of the source files (format version 2).
-- Keyed by (name, row) so one column's values are one contiguous range: a
-- --where predicate reads one range, or a slice of the num index. num has no
-- declared type (no affinity) so 64-bit integer ids stay exact next to reals.
CREATE TABLE object_values(
  name TEXT NOT NULL, row INTEGER NOT NULL, num, txt TEXT,
  PRIMARY KEY(name, row)) WITHOUT ROWID;
CREATE INDEX object_values_by_num ON object_values(name, num) WHERE num IS NOT NULL;
-- One line per column name: how many objects have a number / a text value.
CREATE TABLE value_columns(
  name TEXT PRIMARY KEY, numbers INTEGER NOT NULL, texts INTEGER NOT NULL) WITHOUT ROWID;
)sql";

// meta keys of the default space of each modality (Store::default_space):
// "default_space.<modality>" = space name, and "default_space_chosen.<modality>"
// = "1" when the user chose it. New in 0.x without a format version bump: readers
// ignore meta keys they do not know, and a store without them falls back to
// default_space_by_rule, which is what a build would have recorded.
inline std::string default_space_key(const std::string& modality) { return "default_space." + modality; }
inline std::string default_space_chosen_key(const std::string& modality) { return "default_space_chosen." + modality; }

}  // namespace mmu::schema
