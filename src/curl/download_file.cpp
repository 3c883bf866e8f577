// SPDX-License-Identifier: BSL-1.0
#include "download_file.hpp"

#include <fcntl.h>
#include <openssl/evp.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <system_error>
#include <utility>
#include <vector>

namespace backoff::curl::detail {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t writeback_chunk = 8u << 20;  // start writeback every 8 MiB
constexpr std::string_view meta_magic = "backoff-part 1";

std::string errno_text(int e) { return std::strerror(e); }

const EVP_MD* md_named(const std::string& algorithm) {
  if (algorithm == "sha256") return EVP_sha256();
  if (algorithm == "sha512") return EVP_sha512();
  return nullptr;
}

std::string hex(const unsigned char* md, unsigned n) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * n);
  for (unsigned i = 0; i < n; ++i) {
    out += digits[md[i] >> 4];
    out += digits[md[i] & 15];
  }
  return out;
}

// Where a missing target named through a chain of symlinks would be created.
std::optional<fs::path> follow_dangling(fs::path p) {
  for (int hops = 0; hops < 40; ++hops) {
    struct stat st{};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::error_code ec;
    const fs::path link = fs::read_symlink(p, ec);
    if (ec) return std::nullopt;
    p = link.is_absolute() ? link : p.parent_path() / link;
  }
  return std::nullopt;
}

// Opens an existing file with a name others can guess: only a regular file of
// ours with one link is trusted.
int open_trusted(const fs::path& p, int flags) {
  const int fd = ::open(p.c_str(), flags | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat st{};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid() || st.st_nlink != 1) {
    ::close(fd);
    errno = EPERM;
    return -1;
  }
  return fd;
}

}  // namespace

download_file::~download_file() {
  stop_writeback();
  if (fd_ >= 0 && own_fd_) ::close(fd_);
  if (stream_digest_) EVP_MD_CTX_free(static_cast<EVP_MD_CTX*>(stream_digest_));
}

std::string download_file::open(const fs::path& target, const std::string& url) {
  url_ = url;
  name_ = target.string();
  struct stat st{};
  fs::path where = target;
  if (::stat(target.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return "'" + name_ + "' is a directory";
    if (!S_ISREG(st.st_mode)) {
      // A FIFO, a device, a terminal: not ours to replace. Write into it.
      fd_ = ::open(target.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
      if (fd_ < 0) return "cannot open '" + name_ + "': " + errno_text(errno);
      stream_ = true;
      final_ = target.string();
      return {};
    }
    if (char* real = ::realpath(target.c_str(), nullptr)) {  // replace the file, not the link to it
      where = real;
      std::free(real);
    }
    keep_mode_ = st.st_mode & 07777;
  } else if (errno == ENOENT) {
    const auto end = follow_dangling(target);
    if (!end) return "cannot follow the symbolic links of '" + name_ + "'";
    where = *end;
  } else {
    return "cannot use '" + name_ + "': " + errno_text(errno);
  }
  final_ = where.string();
  const fs::path dir = where.has_parent_path() ? where.parent_path() : fs::path(".");
  part_ = (dir / ("." + where.filename().string() + ".backoff-part")).string();
  meta_ = part_ + ".meta";

  fd_ = open_trusted(part_, O_RDWR);
  if (fd_ < 0 && errno == ENOENT) {
    // 0666 & ~umask, as any program that creates a file.
    fd_ = ::open(part_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd_ < 0) return "cannot create '" + part_ + "': " + errno_text(errno);
  } else if (fd_ < 0) {
    return "cannot use '" + part_ + "' for partial data: " +
           (errno == EPERM ? std::string("not a regular file of this user with a single link") : errno_text(errno));
  }
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int e = errno;
    ::close(fd_);
    fd_ = -1;
    return e == EWOULDBLOCK ? "another download is writing '" + part_ + "'"
                            : "cannot lock '" + part_ + "': " + errno_text(e);
  }
  struct stat part_stat{};
  if (::fstat(fd_, &part_stat) != 0) return "cannot read '" + part_ + "': " + errno_text(errno);
  size_ = static_cast<std::uint64_t>(part_stat.st_size);
  synced_ = size_;
  if (size_ > 0) load_meta(url);
  if (size_ > 0 && !resumed_) {
    if (!discard()) return "cannot truncate '" + part_ + "': " + errno_text(errno);
  }
  return {};
}

void download_file::open_stream(int fd, std::string name) {
  fd_ = fd;
  own_fd_ = false;
  stream_ = true;
  name_ = std::move(name);
  final_ = name_;
}

void download_file::load_meta(const std::string& url) {
  const int fd = open_trusted(meta_, O_RDONLY);
  if (fd < 0) return;
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < (1u << 20);) text.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  std::istringstream in(text);
  std::string line, got_url, validator, length, extents;
  bool has_extents = false;
  if (!std::getline(in, line) || line != meta_magic) return;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space), value = space == std::string::npos ? "" : line.substr(space + 1);
    if (key == "url") got_url = value;
    else if (key == "validator") validator = value;
    else if (key == "length") length = value;
    else if (key == "extents") {
      extents = value;
      has_extents = true;
    }
  }
  if (got_url != url || validator.empty() || validator.starts_with("W/")) return;
  if (length != "-") {
    const auto n = std::strtoull(length.c_str(), nullptr, 10);
    if (length.empty() || length.find_first_not_of("0123456789") != std::string::npos || n < size_) return;
    length_ = n;
  }
  if (has_extents) {
    // Extents are trusted only inside the length and inside what the part
    // holds: anything else is a state file from another download (axel#380).
    if (!length_) return;
    auto done = http::extent_map::parse(extents, *length_);
    if (!done || (!done->done().empty() && done->done().back().end > size_)) {
      length_.reset();
      return;
    }
    size_ = !done->done().empty() && done->done().front().begin == 0 ? done->done().front().end : 0;
    checkpointed_ = done->done_bytes();
    saved_ = std::move(done);
  }
  validator_ = validator;
  resumed_ = true;
}

std::string download_file::meta_text() const {
  std::ostringstream text;
  text << meta_magic << "\nurl " << url_ << "\nvalidator " << validator_ << "\nlength "
       << (length_ ? std::to_string(*length_) : std::string("-")) << "\n";
  if (extents_) text << "extents " << extents_->to_string() << "\n";
  return text.str();
}

bool download_file::write_meta(int part_fd, const std::string& path, const std::string& text, bool durable) {
  // The extents it lists must be on disk before the list is.
  if (durable && ::fdatasync(part_fd) != 0) return false;
  // A new file renamed over the old one: a crash leaves the old list or the
  // new one, never half of one.
  const std::string temp = path + ".new";
  ::unlink(temp.c_str());
  const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) return false;  // without metadata the part is simply not resumed later
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t w = ::write(fd, text.data() + done, text.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) break;
    done += static_cast<std::size_t>(w);
  }
  const bool ok = done == text.size() && (!durable || ::fsync(fd) == 0);
  ::close(fd);
  if (!ok || ::rename(temp.c_str(), path.c_str()) != 0) {
    ::unlink(temp.c_str());
    return false;
  }
  return true;
}

void download_file::save_meta() {
  if (stream_ || meta_.empty()) return;
  if (extents_ && writeback_) {
    // The helper thread syncs the data, then writes the list (in order with
    // the writeback it was asked for).
    {
      std::lock_guard lock(writeback_->mutex);
      writeback_->meta = meta_text();
    }
    writeback_->wake.notify_one();
  } else if (!write_meta(fd_, meta_, meta_text(), extents_.has_value())) {
    return;
  }
  meta_current_ = true;
  if (extents_) checkpointed_ = extents_->done_bytes();
}

int download_file::write(const char* data, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t w = stream_ ? ::write(fd_, data + done, n - done)
                              : ::pwrite(fd_, data + done, n - done, static_cast<off_t>(size_ + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      if (stream_ && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        // Standard output left non-blocking by a parent: wait for the reader.
        pollfd p{fd_, POLLOUT, 0};
        if (::poll(&p, 1, -1) >= 0 || errno == EINTR) continue;
      }
      const int e = errno;
      size_ += done;
      return e;
    }
    done += static_cast<std::size_t>(w);
  }
  if (stream_digest_) EVP_DigestUpdate(static_cast<EVP_MD_CTX*>(stream_digest_), data, n);
  if (extents_ && n > 0) {
    extents_->add({size_, size_ + n});
    meta_current_ = false;
  }
  size_ += n;
  if (!stream_ && (extents_ ? (unsynced_ += n) >= writeback_chunk : size_ - synced_ >= writeback_chunk)) start_writeback();
  if (extents_) {
    segment_progress();
  } else if (!meta_current_ && size_ >= meta_threshold) {
    save_meta();
  }
  return 0;
}

int download_file::write_at(std::uint64_t offset, const char* data, std::size_t n) {
  std::size_t done = 0;
  while (done < n) {
    const ssize_t w = ::pwrite(fd_, data + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    done += static_cast<std::size_t>(w);
  }
  if ((unsynced_ += n) >= writeback_chunk) start_writeback();
  return 0;
}

void download_file::mark_done(http::extent e) {
  if (!extents_ || e.empty()) return;
  extents_->add(e);
  meta_current_ = false;
  segment_progress();
}

void download_file::segment_progress() {
  const auto now = std::chrono::steady_clock::now();
  if (extents_->done_bytes() - checkpointed_ >= segment_checkpoint || now - checkpoint_time_ >= segment_interval) {
    checkpoint_time_ = now;
    save_meta();
  }
}

void download_file::begin_segments(http::extent_map done) {
  saved_.reset();
  extents_ = std::move(done);
  checkpointed_ = 0;
  checkpoint_time_ = std::chrono::steady_clock::now();
  meta_current_ = false;
  start_writeback();  // the helper thread that takes the checkpoints
}

void download_file::end_segments() {
  saved_.reset();
  if (!extents_ && !resumed_) return;
  stop_writeback();  // its checkpoints describe extents
  extents_.reset();
  // Bytes past the stream's end belong to no stream: the metadata of one
  // stream describes the part by its size.
  if (!stream_ && fd_ >= 0) {
    struct stat st{};
    if (::fstat(fd_, &st) == 0 && static_cast<std::uint64_t>(st.st_size) > size_ &&
        ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
      size_ = 0;  // cannot drop the stray bytes: keep nothing (the next write starts over)
      validator_.clear();
    }
  }
  meta_current_ = false;
}

// Hands what was written to the kernel's writeback now, so that the final fsync
// finds little left to do and the download is not paid for twice at the end:
// the bytes appended since the last call, or (segmented: written anywhere) the
// whole file.
void download_file::start_writeback() {
  off_t from = 0, len = 0;  // len 0: to the end of the file
  if (!extents_) {
    from = static_cast<off_t>(synced_);
    len = static_cast<off_t>(size_ - synced_);
    synced_ = size_;
  }
  unsynced_ = 0;
  if (!writeback_) {
    writeback_ = std::make_unique<writeback>();
    writeback_->thread = std::thread([w = writeback_.get(), fd = fd_, path = meta_] {
      std::unique_lock lock(w->mutex);
      for (;;) {
        // Work asked for before a stop is done first: a checkpoint is not lost.
        w->wake.wait(lock, [&] { return w->stop || w->pending || !w->meta.empty(); });
        if (!w->pending && w->meta.empty()) return;
        const bool flush = std::exchange(w->pending, false);
        const off_t f = w->from, n = w->len;
        const std::string meta = std::exchange(w->meta, std::string());
        lock.unlock();
        if (flush) ::sync_file_range(fd, f, n, SYNC_FILE_RANGE_WRITE);
        if (!meta.empty()) write_meta(fd, path, meta, true);
        lock.lock();
      }
    });
  }
  {
    std::lock_guard lock(writeback_->mutex);
    writeback& w = *writeback_;
    if (w.pending) {  // not started yet: one request covering both
      const off_t end = w.len == 0 || len == 0 ? 0 : std::max(w.from + w.len, from + len);
      w.from = std::min(w.from, from);
      w.len = end == 0 ? 0 : end - w.from;
    } else {
      w.from = from;
      w.len = len;
    }
    w.pending = true;
  }
  writeback_->wake.notify_one();
}

void download_file::stop_writeback() {
  if (!writeback_) return;
  {
    std::lock_guard lock(writeback_->mutex);
    writeback_->stop = true;
  }
  writeback_->wake.notify_one();
  writeback_->thread.join();
  writeback_.reset();
}

bool download_file::discard() {
  if (stream_) return size_ == 0;
  stop_writeback();
  if (::ftruncate(fd_, 0) != 0) return false;
  size_ = synced_ = unsynced_ = 0;
  extents_.reset();  // checkpointed_ is read only beside extents_, which begin_segments sets with it
  saved_.reset();
  validator_.clear();
  length_.reset();
  resumed_ = false;
  ::unlink(meta_.c_str());
  meta_current_ = true;
  return true;
}

void download_file::describe(const std::string& validator, std::optional<std::uint64_t> length) {
  if (validator == validator_ && length == length_) return;
  validator_ = validator;
  length_ = length;
  meta_current_ = false;
  if (validator_.empty()) {
    ::unlink(meta_.c_str());
    meta_current_ = true;
  } else if (size_ >= meta_threshold) {
    save_meta();
  } else {
    ::unlink(meta_.c_str());  // an older description must not outlive this one
  }
}

void download_file::checkpoint() {
  if ((!meta_current_ || (extents_ && extents_->done_bytes() != checkpointed_)) && resumable()) save_meta();
}

void download_file::track_digest(const std::string& algorithm) {
  const EVP_MD* md = md_named(algorithm);
  if (!md || !stream_) return;
  auto* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, md, nullptr);
  stream_digest_ = ctx;
  stream_algorithm_ = algorithm;
}

std::string download_file::digest(const std::string& algorithm, std::uint64_t from, std::optional<std::uint64_t> to) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  if (stream_) {
    if (!stream_digest_ || algorithm != stream_algorithm_ || from != 0) return {};
    EVP_DigestFinal_ex(static_cast<EVP_MD_CTX*>(stream_digest_), md, &n);
    return hex(md, n);
  }
  const EVP_MD* type = md_named(algorithm);
  if (!type) return {};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, type, nullptr);
  std::vector<char> buf(1 << 20);
  std::uint64_t at = from;
  const std::uint64_t end = to ? *to : extents_ ? extents_->length() : size_;
  bool ok = true;
  while (at < end) {
    const ssize_t r = ::pread(fd_, buf.data(), std::min<std::uint64_t>(buf.size(), end - at), static_cast<off_t>(at));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      ok = false;
      break;
    }
    EVP_DigestUpdate(ctx, buf.data(), static_cast<std::size_t>(r));
    at += static_cast<std::uint64_t>(r);
  }
  EVP_DigestFinal_ex(ctx, md, &n);
  EVP_MD_CTX_free(ctx);
  return ok ? hex(md, n) : std::string{};
}

std::string download_file::commit() {
  if (stream_) return {};
  stop_writeback();
  if (keep_mode_ && ::fchmod(fd_, *keep_mode_) != 0)
    return "cannot set the mode of '" + part_ + "': " + errno_text(errno);
  if (::fsync(fd_) != 0) return "cannot flush '" + part_ + "': " + errno_text(errno);
  if (::rename(part_.c_str(), final_.c_str()) != 0)
    return "cannot move the download to '" + final_ + "': " + errno_text(errno);
  ::unlink(meta_.c_str());
  ::close(fd_);  // releases the lock, after the rename
  fd_ = -1;
  // The rename is durable once the directory is.
  const fs::path final_path(final_);
  const fs::path dir = final_path.has_parent_path() ? final_path.parent_path() : fs::path(".");
  if (const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

void download_file::abandon(bool keep) {
  stop_writeback();
  if (stream_ || fd_ < 0) return;
  if (keep && resumable()) {
    checkpoint();
  } else {
    ::unlink(part_.c_str());
    ::unlink(meta_.c_str());
  }
  ::close(fd_);
  fd_ = -1;
}

}  // namespace backoff::curl::detail
