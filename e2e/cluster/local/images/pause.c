/* Minimal pod sandbox "pause" process: sleeps, reaps children, exits on SIGINT/SIGTERM.
 * Built with `gcc -static -Os -s` and imported as the sandbox image (nothing is pulled). */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void on_chld(int sig) {
	(void)sig;
	while (waitpid(-1, NULL, WNOHANG) > 0) {
	}
}

int main(void) {
	struct sigaction term = {0}, chld = {0};
	term.sa_handler = on_term;
	chld.sa_handler = on_chld;
	chld.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGINT, &term, NULL) < 0 || sigaction(SIGTERM, &term, NULL) < 0 ||
	    sigaction(SIGCHLD, &chld, NULL) < 0)
		return 1;
	for (;;)
		pause();
	return 0;
}
