#include "data/text_corpus.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "common/subprocess.h"

namespace retort::data {
namespace {

constexpr char kBibleRange[] = "Gen1:1-Rev22:21";

// Removes the temporary files of one `bible` run however it ends.
struct TempFiles {
  std::vector<std::string> paths;
  ~TempFiles() {
    for (const std::string& p : paths) ::unlink(p.c_str());
  }
};

// "Ge1:1 In the beginning ..." -> "In the beginning ...". The reference is an
// optional digit (1-3 for "1Ki", "2Cor", "3Jn"), letters, chapter, ':', verse.
bool StripReference(absl::string_view line, absl::string_view* text) {
  size_t i = 0;
  if (i < line.size() && line[i] >= '1' && line[i] <= '3') ++i;
  const size_t letters = i;
  while (i < line.size() && std::isalpha(static_cast<unsigned char>(line[i]))) ++i;
  if (i == letters) return false;
  const size_t chapter = i;
  while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
  if (i == chapter || i >= line.size() || line[i] != ':') return false;
  const size_t verse = ++i;
  while (i < line.size() && std::isdigit(static_cast<unsigned char>(line[i]))) ++i;
  if (i == verse || i >= line.size() || line[i] != ' ') return false;
  *text = absl::StripAsciiWhitespace(line.substr(i + 1));
  return true;
}

}  // namespace

absl::Status WriteKjvText(const std::string& path) {
  TempFiles temp;
  const std::string out_path = absl::StrCat(path, ".bible-out.", ::getpid());
  const std::string err_path = absl::StrCat(path, ".bible-err.", ::getpid());
  temp.paths = {out_path, err_path};
  // -f turns pretty-printing off: one verse a line, each led by its
  // reference, and no line wrapping.
  Subprocess::Options run;
  run.argv = {"bible", "-f", kBibleRange};
  run.stdout_path = out_path;
  run.stderr_path = err_path;
  absl::StatusOr<std::unique_ptr<Subprocess>> bible = Subprocess::Start(std::move(run));
  if (!bible.ok()) {
    if (absl::IsNotFound(bible.status())) {
      return absl::NotFoundError(absl::StrCat(
          "the King James Bible comes from the `bible` program, which is not installed; "
          "install the Debian package bible-kjv (apt-get install bible-kjv) or pass text "
          "files instead (",
          bible.status().message(), ")"));
    }
    return bible.status();
  }
  absl::StatusOr<int> exit_status = (*bible)->Wait(absl::Seconds(120));
  if (!exit_status.ok()) {
    return absl::Status(
        exit_status.status().code(),
        absl::StrCat("`bible -f ", kBibleRange, "`: ", exit_status.status().message()));
  }
  if (*exit_status != 0) {
    absl::StatusOr<std::string> err = ReadFile(err_path);
    return absl::InternalError(absl::StrCat(
        "`bible -f ", kBibleRange, "` exited with status ", *exit_status, ": ",
        absl::StripAsciiWhitespace(err.ok() ? *err : std::string("(no error output)"))));
  }
  RETORT_ASSIGN_OR_RETURN(std::string raw, ReadFile(out_path));
  std::string text;
  text.reserve(raw.size());
  int64_t verses = 0;
  int64_t line_number = 0;
  absl::string_view rest = raw;
  while (!rest.empty()) {
    const size_t end = rest.find('\n');
    absl::string_view line = rest.substr(0, end);
    rest = end == absl::string_view::npos ? absl::string_view() : rest.substr(end + 1);
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    absl::string_view verse;
    if (!StripReference(line, &verse)) {
      return absl::DataLossError(
          absl::StrCat("line ", line_number, " of `bible -f ", kBibleRange,
                       "` is not a \"Book1:1 text\" verse line: '", line.substr(0, 80),
                       "'; is the installed bible-kjv a different version?"));
    }
    if (verse.empty()) continue;
    absl::StrAppend(&text, verse, "\n");
    ++verses;
  }
  if (verses == 0) {
    return absl::DataLossError(absl::StrCat("`bible -f ", kBibleRange, "` printed no verses"));
  }
  return WriteFileAtomically(path, text);
}

absl::Status ForEachTextLine(const std::vector<std::string>& files,
                             const std::function<absl::Status(const std::string&)>& visit) {
  if (files.empty()) return absl::InvalidArgumentError("no text files given");
  for (const std::string& file : files) {
    struct stat st;
    if (::stat(file.c_str(), &st) != 0) {
      const int err = errno;
      const std::string message =
          absl::StrCat("cannot read text file ", file, ": ", std::strerror(err));
      if (err == ENOENT) return absl::NotFoundError(message);
      if (err == EACCES) return absl::PermissionDeniedError(message);
      return absl::InternalError(message);
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("text file ", file, " is not a regular file (a directory?)"));
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      return absl::PermissionDeniedError(
          absl::StrCat("cannot open text file ", file, ": ", std::strerror(errno)));
    }
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (absl::StripAsciiWhitespace(line).empty()) continue;
      RETORT_RETURN_IF_ERROR(visit(line));
    }
    if (in.bad()) return absl::DataLossError(absl::StrCat("reading text file ", file, " failed"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> ReadTextLines(const std::vector<std::string>& files) {
  std::vector<std::string> lines;
  RETORT_RETURN_IF_ERROR(ForEachTextLine(files, [&lines](const std::string& line) {
    lines.push_back(line);
    return absl::OkStatus();
  }));
  return lines;
}

}  // namespace retort::data
