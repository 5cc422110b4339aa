/* LD_PRELOAD shim for softflowd: turn on libpcap immediate mode before pcap_activate().
 * softflowd polls its capture with a 0 ms timeout; with libpcap 1.10's TPACKET_V3 ring the
 * kernel hands over a block only when it is full, so a quiet interface exports nothing
 * (shared/notes/PLATFORM.md section 7). Immediate mode delivers each packet at once. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pcap/pcap.h>

int pcap_activate(pcap_t *p)
{
    static int (*real_activate)(pcap_t *) = 0;
    if (!real_activate)
        real_activate = (int (*)(pcap_t *))dlsym(RTLD_NEXT, "pcap_activate");
    pcap_set_immediate_mode(p, 1);
    return real_activate(p);
}
