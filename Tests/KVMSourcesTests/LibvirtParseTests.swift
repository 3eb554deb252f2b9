import Foundation
@testable import KVMSources
import Testing

/// libvirt's statistic names (as `virsh domstats --vm --vcpu` prints them on this host) map to
/// debugfs's names, a vCPU and a kind; libvirt's own values are not KVM's and are left out.
struct LibvirtParseTests {
    @Test func suffixesGiveKinds() {
        #expect(LibvirtSource.parse("vcpu.0.exits.sum")! == ("exits", 0, .counter))
        #expect(LibvirtSource.parse("vcpu.12.blocking.cur")! == ("blocking", 12, .level))
        #expect(LibvirtSource.parse("vm.pages_4k.cur")! == ("pages_4k", nil, .level))
        #expect(LibvirtSource.parse("vm.max_mmu_rmap_size.max")! == ("max_mmu_rmap_size", nil, .level))
        #expect(LibvirtSource.parse("vm.mmu_cache_miss.sum")! == ("mmu_cache_miss", nil, .counter))
    }

    @Test func librarysOwnValuesAreNotStatistics() {
        for field in ["vcpu.current", "vcpu.maximum", "vcpu.0.state", "vcpu.0.time", "vcpu.0.wait",
                      "vcpu.x.exits.sum", "vcpu.-1.exits.sum", "vm..sum", "state.state", "vcpu.0.exits.avg"] {
            #expect(LibvirtSource.parse(field) == nil, "\(field)")
        }
    }

    @Test func localURIs() {
        #expect(LibvirtSource.isLocal("qemu:///system") && LibvirtSource.isLocal("qemu:///session"))
        #expect(LibvirtSource.isLocal("qemu:///system?socket=/run/x"))
        #expect(!LibvirtSource.isLocal("qemu+ssh://root@host/system") && !LibvirtSource.isLocal("qemu://h/system"))
    }
}

/// The bpf source puts kernel threads that hit KVM's tracepoints (kvm-pit, vhost, kdamond)
/// in the host's row, not in a guest row of their own.
struct KernelThreadTests {
    @Test func kernelThreadsAreTold() {
        #expect(BPFSource.isKernelThread(proc: "/proc", pid: 2))  // kthreadd
        #expect(!BPFSource.isKernelThread(proc: "/proc", pid: UInt32(getpid())))
        #expect(!BPFSource.isKernelThread(proc: "/proc", pid: 0x7fff_fff0))  // none: not a kernel thread
    }
}
