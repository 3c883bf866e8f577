// SPDX-License-Identifier: BSL-1.0
// Where a download's bytes go (private to backoff::curl): a part file beside
// the target that is renamed into place when complete, or a stream (standard
// output, a FIFO, a device) written in order.
//
// The part file has a predictable name, `.NAME.backoff-part`, with its resume
// metadata (URL, validator, length and, for a segmented download, the extents
// that are complete) in `.NAME.backoff-part.meta`, so that a later
// download of the same URL to the same target continues it. Because the name is
// predictable it is opened with O_NOFOLLOW and used only when it is a regular
// file owned by this user with a single link; an exclusive flock keeps two
// downloads from writing it at once.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "backoff/http/segments.hpp"

namespace backoff::curl::detail {

class download_file {
 public:
  download_file() = default;
  ~download_file();
  download_file(const download_file&) = delete;
  download_file& operator=(const download_file&) = delete;

  // Prepares `target` for a download of `url`. A symlink is followed to the file
  // it names (created if missing); a regular file is replaced atomically; any
  // other kind of file (FIFO, device, /dev/stdout) is written directly. Picks up
  // resumable data a previous download left. Returns an error message, or empty.
  std::string open(const std::filesystem::path& target, const std::string& url);
  // Writes to an open descriptor that is not ours (standard output).
  void open_stream(int fd, std::string name);

  bool is_stream() const noexcept { return stream_; }
  std::uint64_t size() const noexcept { return size_; }
  // What the data held so far was fetched under (empty: cannot be resumed).
  const std::string& validator() const noexcept { return validator_; }
  const std::optional<std::uint64_t>& length() const noexcept { return length_; }
  // The file the download will become, after symlinks (for messages).
  std::filesystem::path final_path() const { return final_; }
  std::filesystem::path part_path() const { return part_; }

  // Appends; returns 0 or an errno.
  int write(const char* data, std::size_t n);

  // Segmented downloads. The part then holds the extents of `extents()`,
  // written at their offsets by any connection; size() stays the end of the
  // extent that write() appends to (the first connection's stream).
  // Enters segmented mode for a file of length() bytes, with `done` complete.
  void begin_segments(http::extent_map done);
  // Back to one stream: keeps the prefix that is complete, drops the rest.
  void end_segments();
  bool segmented() const noexcept { return extents_.has_value(); }
  const http::extent_map& extents() const { return *extents_; }
  // What the metadata of a segmented download listed as complete (when it
  // was loaded and checked): resume these, fetch the gaps.
  const std::optional<http::extent_map>& saved_extents() const noexcept { return saved_; }
  // Writes at `offset` without marking anything complete; returns 0 or an errno.
  int write_at(std::uint64_t offset, const char* data, std::size_t n);
  // Marks bytes written with write_at complete (after whatever checked them).
  void mark_done(http::extent e);
  // Drops everything held (a new version, or bytes that cannot be trusted).
  // False when the data cannot be taken back (a stream that was written to).
  bool discard();
  // Records what the held bytes belong to, in memory and in the metadata file.
  void describe(const std::string& validator, std::optional<std::uint64_t> length);

  // Hex digest of the held bytes from offset `from` up to `to` (default: the
  // end: size(), or length() when segmented) ("sha256" or "sha512"); empty on
  // a read error. A stream cannot be re-read: call track_digest before the
  // first write (and `from` must be 0).
  std::string digest(const std::string& algorithm, std::uint64_t from = 0,
                     std::optional<std::uint64_t> to = std::nullopt);
  void track_digest(const std::string& algorithm);

  // Makes the download visible: fsync, rename over the target (keeping an
  // existing file's mode), remove the metadata. Returns an error or empty.
  std::string commit();
  // Gives up: keeps the part file and its metadata for a later resume when
  // `keep` and the data is resumable; otherwise removes them.
  void abandon(bool keep);
  // Whether abandon(true) keeps something a later run can resume.
  bool resumable() const noexcept {
    return !stream_ && fd_ >= 0 && !validator_.empty() && (size_ > 0 || (extents_ && extents_->done_bytes() > 0));
  }
  // Writes the metadata now if the part is resumable and it is not written yet
  // (after an attempt that failed: the wait before the next may be long).
  void checkpoint();

  // The metadata is written once the part holds this much (or when an attempt
  // fails, or at abandon): a download killed before that starts over, which
  // costs less than creating and removing a second file for every small one.
  static constexpr std::uint64_t meta_threshold = 256 * 1024;
  // A segmented download's metadata is rewritten (data synced first) each
  // time this much more is complete, so that a crash loses at most this much.
  static constexpr std::uint64_t segment_checkpoint = 16u << 20;
  static constexpr std::chrono::seconds segment_interval{1};  // … or this long has passed

 private:
  void load_meta(const std::string& url);
  void save_meta();
  std::string meta_text() const;
  // Writes `text` as the metadata: a new file, renamed over the old one;
  // with `durable`, the part's data is synced first and the file too.
  static bool write_meta(int part_fd, const std::string& path, const std::string& text, bool durable);
  void segment_progress();
  void start_writeback();
  void stop_writeback();

  // Write-behind: a helper thread hands written ranges to the kernel's
  // writeback (sync_file_range may block when the device queue is full, and
  // must not stall the transfer), so that the final fsync finds little to do.
  // A segmented download's checkpoints (fdatasync, then the metadata) run
  // there too, off the transfers' thread.
  struct writeback {
    std::thread thread;
    std::mutex mutex;
    std::condition_variable wake;
    bool pending = false;  // a range to flush: [from, from + len), len 0 = to the end
    off_t from = 0, len = 0;
    std::string meta;      // metadata to write once the data is synced (segmented)
    bool stop = false;
  };
  std::unique_ptr<writeback> writeback_;

  int fd_ = -1;
  bool stream_ = false;
  bool own_fd_ = true;
  bool resumed_ = false;
  bool meta_current_ = true;  // what is on disk describes the part (or nothing needs describing)
  std::uint64_t size_ = 0;
  std::uint64_t synced_ = 0;    // one stream: bytes handed to writeback so far
  std::uint64_t unsynced_ = 0;  // segmented: bytes written since the last writeback
  std::string url_, validator_;
  std::optional<std::uint64_t> length_;
  std::optional<mode_t> keep_mode_;
  std::optional<http::extent_map> extents_;  // segmented: what is complete
  std::optional<http::extent_map> saved_;    // what the loaded metadata listed
  std::uint64_t checkpointed_ = 0;           // done bytes the metadata lists
  std::chrono::steady_clock::time_point checkpoint_time_{};  // the mode of the file being replaced
  // Plain strings: a std::filesystem::path keeps a list of its components,
  // which thousands of concurrent downloads would pay for three times each.
  std::string final_, part_, meta_;
  std::string name_;                 // for messages
  void* stream_digest_ = nullptr;    // EVP_MD_CTX for streams, which cannot be re-read
  std::string stream_algorithm_;
};

}  // namespace backoff::curl::detail
