#include "common/torch_status.h"

#include <c10/util/Exception.h>

#include <new>
#include <stdexcept>

namespace retort {

namespace {

// Joins a multi-line message into one line so errors print as one line.
std::string OneLine(std::string message) {
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) {
    message.pop_back();
  }
  std::string out;
  for (char c : message) {
    if (c == '\n') {
      out += "; ";
    } else {
      out += c;
    }
  }
  return out;
}

std::string RawMessage() {
  try {
    throw;
  } catch (const c10::Error& e) {
    return e.what_without_backtrace();
  } catch (const std::bad_alloc&) {
    return "out of memory";
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception";
  }
}

}  // namespace

std::string CurrentExceptionMessage() { return OneLine(RawMessage()); }

}  // namespace retort
