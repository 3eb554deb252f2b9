import Foundation
import KVMCore
import Testing

/// The cgroup a process is counted through, on a fake tree shaped like libvirt's cgroup v2
/// layout (the real libvirt here runs without cgroups, so the kernel cannot show it): QEMU's
/// main thread in `…/libvirt/emulator`, its vCPU threads in threaded `…/libvirt/vcpuN`.
struct CGroupTests {
    final class Tree {
        let root = NSTemporaryDirectory() + "kvmstat-cgroup-" + UUID().uuidString
        var paths: SystemPaths {
            var paths = SystemPaths(root: root)
            paths.cgroup2 = root + "/cgroup"
            return paths
        }
        func write(_ relative: String, _ text: String) throws {
            let path = root + "/" + relative
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: false, encoding: .utf8)
        }
        deinit { try? FileManager.default.removeItem(atPath: root) }
    }

    private func libvirtGuest() throws -> Tree {
        let tree = Tree()
        let scope = "/machine.slice/machine-qemu-1-web1.scope/libvirt"
        for (tid, group) in [(100, "emulator"), (101, "vcpu0"), (102, "vcpu1")] {
            try tree.write("proc/100/task/\(tid)/cgroup", "0::\(scope)/\(group)\n")
            try tree.write("cgroup\(scope)/\(group)/cgroup.threads", "\(tid)\n")
        }
        try tree.write("proc/100/cgroup", "0::\(scope)/emulator\n")
        try tree.write("cgroup\(scope)/emulator/cgroup.procs", "100\n")
        try tree.write("cgroup\(scope)/cgroup.threads", "")
        try tree.write("cgroup\(scope)/cgroup.procs", "")
        return tree
    }

    @Test func threadsInSeveralCGroupsAreCountedThroughTheirCommonAncestor() throws {
        let tree = try libvirtGuest()
        let cgroup = try #require(CGroup.of(pid: 100, paths: tree.paths))
        #expect(cgroup.path == "/machine.slice/machine-qemu-1-web1.scope/libvirt")
        #expect(cgroup.threads()?.sorted() == [100, 101, 102])
        #expect(cgroup.holdsOnly(pid: 100, proc: tree.paths.proc))
        #expect(cgroup.stillOnly(pid: 100))
        // A helper process (swtpm, virtiofsd) joining the emulator's cgroup is noticed.
        try tree.write("cgroup\(cgroup.path)/emulator/cgroup.procs", "100\n200\n")
        #expect(!cgroup.stillOnly(pid: 100))
    }

    @Test func noHierarchyOrGoneProcessHasNoCGroup() throws {
        let tree = try libvirtGuest()
        var paths = tree.paths
        #expect(CGroup.of(pid: 999, paths: paths) == nil)
        paths.cgroup2 = nil
        #expect(CGroup.of(pid: 100, paths: paths) == nil)
    }
}
