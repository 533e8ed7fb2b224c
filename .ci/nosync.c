/* The negative control for the power-cut tests: every way a program asks for its data
 * to reach the disk returns success and does nothing. Loaded with LD_PRELOAD into the
 * test binary, the power-cut tests must fail; if they pass, they no longer observe
 * durability. */
#include <stddef.h>
#include <sys/types.h>

int fsync(int fd) { (void)fd; return 0; }
int fdatasync(int fd) { (void)fd; return 0; }
int msync(void *addr, size_t len, int flags) { (void)addr; (void)len; (void)flags; return 0; }
int sync_file_range(int fd, off_t off, off_t n, unsigned int flags) {
  (void)fd; (void)off; (void)n; (void)flags; return 0;
}
void sync(void) {}
int syncfs(int fd) { (void)fd; return 0; }
