import KVMCore
import Testing

@Suite struct CoreTests {
    @Test func jsonRendering() {
        let value = JSONValue.object([
            ("a", .int(1)), ("b", .null), ("c", .string("q\"\\\n\u{1b}")),
            ("d", .array([.bool(true), .double(0.5)])), ("e", .object([])),
        ])
        #expect(value.rendered()
                == #"{"a": 1, "b": null, "c": "q\"\\\n\u001b", "d": [true, 0.5], "e": {}}"#)
    }

    @Test func tracepointParent() {
        #expect(FieldName.tracepointParent(of: "kvm_exit(HLT)") == "kvm_exit")
        #expect(FieldName.tracepointParent(of: "kvm_userspace_exit(IO)") == "kvm_userspace_exit")
        #expect(FieldName.tracepointParent(of: "kvm_pio") == nil)
    }

    @Test func cpuinfoParsing() {
        let parsed = HostFacts.parseCPUInfo("""
            vendor_id\t: GenuineIntel
            flags\t\t: fpu vmx  sse
            flags\t\t: svm
            """)
        #expect(parsed.vendor == "GenuineIntel")
        #expect(parsed.flags == ["fpu", "vmx", "sse"])
        #expect(HostFacts.parseCPUInfo("").flags.isEmpty)
    }

    @Test func typedErrorsFromTheSyscallLayer() {
        #expect(throws: Errno.noSuchFile) { try FileSystem.readText("/nonexistent/kvmstat") }
        #expect(throws: Errno.noSuchFile) { try FileSystem.listDirectory("/nonexistent/kvmstat") }
        #expect(throws: Errno.notDirectory) { try FileSystem.listDirectory("/proc/self/status") }
        #expect(Errno.notPermitted.description == "Operation not permitted")
    }

    @Test func readsRealKernelFiles() throws {
        let text = try FileSystem.readText("/proc/self/status")
        #expect(text.contains("Pid:"))
        let entries = try FileSystem.listDirectory("/proc/self")
        #expect(entries.contains { $0.name == "task" && $0.isDirectory && $0.inode != 0 })
        #expect(!entries.contains { $0.name == "." || $0.name == ".." })
    }

    @Test func unameMachineIsTheKernels() {
        #expect(!HostFacts.unameMachine().isEmpty)
    }

    @Test func systemPathsRoot() {
        #expect(SystemPaths().proc == "/proc")
        #expect(SystemPaths(root: "/tmp/x/").sys == "/tmp/x/sys")
    }

    @Test func eventsAreValuesInUpstreamsOrder() {
        let child = EventID("kvm_exit(HLT)", parent: "kvm_exit")
        #expect(child.isChild && child.name == "kvm_exit(HLT)" && child.upstreamKey == "kvm_exit(HLT) kvm_exit")
        let guest = EventID.guestTotal(4242)
        #expect(guest.isGuestTotal && !guest.isChild && guest.upstreamKey == "4242")
        // A name with a space or a slash is only a name.
        let odd = EventID("with space/slash")
        #expect(!odd.isChild && odd.name == "with space/slash")
        // Upstream sorted `child parent` strings: a parent right before its children.
        let sorted: [EventID] = [child, "kvm_pio", "kvm_exit", EventID("kvm_exit(IO)", parent: "kvm_exit"), guest].sorted()
        #expect(sorted.map(\.upstreamKey) == ["4242", "kvm_exit", "kvm_exit(HLT) kvm_exit", "kvm_exit(IO) kvm_exit", "kvm_pio"])
    }

    /// The same count of two guests has one shape; anything else that differs, another.
    @Test func shapesAreKeysButTheirGuest() {
        let exits = EventID("exits(vcpu1)", parent: "exits", vcpu: 1, source: "qmp")
        #expect(exits.of(guest: 20).sameShape(as: exits.of(guest: 4000)) && exits.of(guest: 20) != exits.of(guest: 4000))
        #expect(exits.of(guest: 20).shapeCode == exits.shapeCode)
        for other in [EventID("exits(vcpu1)", parent: "exits", vcpu: 2, source: "qmp"),
                      EventID("exits(vcpu1)", parent: "exits", vcpu: 1, source: "libvirt"),
                      EventID("exits(vcpu1)", parent: "exit", vcpu: 1, source: "qmp"),
                      EventID("exits(vcpu1)", parent: "exits", vcpu: 1),
                      EventID("exits", vcpu: 1, source: "qmp")] {
            #expect(!other.sameShape(as: exits), "\(other)")
        }
    }

    @Test func jsonParsingOfWhatMonitorsSend() throws {
        let value = try JSONValue.parse(#"{"a": [1, -2, 18446744073709551615, 1.5e3, true, null, "x\u00e9\ud83d\ude00"]}"#)
        let items = try #require(value["a"]?.arrayValue)
        #expect(items[0].uint64Value == 1 && items[1] == .int(-2) && items[2].uint64Value == UInt64.max)
        #expect(items[3] == .double(1500) && items[4] == .bool(true) && items[5] == .null)
        #expect(items[6].stringValue == "x\u{e9}\u{1F600}")
        // A lone or broken surrogate is U+FFFD, never a trap; garbage is an error, not a crash.
        #expect(try JSONValue.parse(#""\ud800\u0041""#).stringValue == "\u{FFFD}A")
        for bad in ["{", "[1,]", #"{"a" 1}"#, "tru", "\"abc", "1 2", String(repeating: "[", count: 100)] {
            #expect(throws: JSONValue.ParseError.self) { try JSONValue.parse(bad) }
        }
    }
}
