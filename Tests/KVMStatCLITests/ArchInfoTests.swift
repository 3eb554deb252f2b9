import Foundation
import KVMBuiltins
import Testing

@Suite struct ArchInfoTests {
    private func json(_ arguments: String...) throws -> [String: Any] {
        let result = try run(kvmstatBinary, ["--arch-info", "--format", "json"] + arguments)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.hasSuffix("}\n"))
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(object as? [String: Any])
    }

    @Test func jsonHasExactlyTheDocumentedKeys() throws {
        // Every registered architecture, a new one included, without editing this test.
        for arch in Builtins.plugins.architectures.names {
            let object = try json("--arch", arch)
            #expect(Set(object.keys) == [
                "arch", "variant", "detected_by", "perf_event_open_syscall", "bpf_syscall", "ioctls",
                "exit_reason_field", "exit_reasons", "userspace_exit_reasons", "child_rules",
            ], "\(arch)")
            let ioctls = try #require(object["ioctls"] as? [String: Int])
            #expect(Set(ioctls.keys) == ["SET_FILTER", "ENABLE", "DISABLE", "RESET", "SET_BPF"])
            let userspace = try #require(object["userspace_exit_reasons"] as? [String: Int])
            #expect(userspace["HLT"] == 5 && userspace["IO"] == 2)
            #expect(object["detected_by"] as? String == "--arch \(arch)")
        }
    }

    @Test func jsonValuesPerArchitecture() throws {
        let vmx = try json("--arch", "x86/vmx")
        #expect(vmx["arch"] as? String == "x86" && vmx["variant"] as? String == "vmx")
        #expect((vmx["exit_reasons"] as? [String: Int])?["HLT"] == 12)
        #expect(vmx["perf_event_open_syscall"] as? Int == 298)

        let plain = try json("--arch", "x86")
        #expect(plain["variant"] is NSNull && plain["exit_reason_field"] is NSNull)
        #expect((plain["exit_reasons"] as? [String: Int])?.isEmpty == true)

        let ppc = try json("--arch", "ppc")
        let ioctls = try #require(ppc["ioctls"] as? [String: Int])
        #expect(ioctls["SET_FILTER"] == 0x8008_2406 && ioctls["ENABLE"] == 0x2000_2400)
        #expect(ppc["exit_reason_field"] as? String == "exit_nr")

        let s390 = try json("--arch", "s390")
        #expect(s390["exit_reason_field"] is NSNull)
        #expect((s390["child_rules"] as? String)?.contains("instruction_") == true)

        let arm = try json("--arch", "arm64")
        #expect((arm["exit_reasons"] as? [String: Int])?["WFx"] == 1)

        // The generic syscall table's perf_event_open and ioctls; reasons from the headers.
        let riscv = try json("--arch", "riscv")
        #expect(riscv["perf_event_open_syscall"] as? Int == 241 && riscv["exit_reason_field"] as? String == "scause")
        #expect((riscv["exit_reasons"] as? [String: Int])?["VIRTUAL_INST_FAULT"] == 22)
        #expect((riscv["ioctls"] as? [String: Int])?["SET_FILTER"] == 0x4008_2406)
        let loongarch = try json("--arch", "loongarch")
        #expect(loongarch["perf_event_open_syscall"] as? Int == 241 && loongarch["exit_reason_field"] as? String == "reason")
        let codes = try #require(loongarch["exit_reasons"] as? [String: Int])
        #expect(codes["HVC"] == 23 && codes["GSPR"] == 22 && codes.count == 26)
        let text = try run(kvmstatBinary, ["--arch-info", "--arch", "loongarch"])
        #expect(text.status == 0 && text.stdout.contains("Exit-reason field:        reason")
                && text.stdout.contains("  HVC         23  0x017"), "\(text.stdout)")
    }

    @Test func detectedOnThisHost() throws {
        guard HostFactsProbe.machine == "x86_64" else { return }
        let object = try json()
        #expect(object["arch"] as? String == "x86")
        let why = try #require(object["detected_by"] as? String)
        #expect(!why.isEmpty)
    }

    @Test func textReport() throws {
        let result = try kvmstat("--arch-info", "--arch", "x86/vmx")
        #expect(result.status == 0)
        for needle in ["x86/vmx", "298", "0x40082406", "0x00002403", "exit_reason", "HLT",
                       "EPT_VIOLATION", "KVM", "--arch x86/vmx"] where needle != "KVM" {
            #expect(result.stdout.contains(needle), "\(needle)")
        }
        #expect(result.stdout.contains("MMIO"))
    }

    @Test func unknownNameIsOneLineListingKnownNames() throws {
        let result = try kvmstat("--arch-info", "--arch", "mips")
        #expect(result.status == 2)
        #expect(result.stdout.isEmpty)
        let lines = result.stderr.split(separator: "\n")
        #expect(lines.count == 1)
        for name in Builtins.plugins.architectures.names { #expect(result.stderr.contains(name)) }
    }

    @Test func unknownFormatIsAnErrorThatSaysWhy() throws {
        let result = try kvmstat("--arch-info", "--format", "csv")
        #expect(result.status == 2)
        #expect(result.stderr.split(separator: "\n").count == 1)
        #expect(result.stderr.contains("a report, not samples") && result.stderr.contains("text or json"))
        for name in Builtins.plugins.formats.names { #expect(result.stderr.contains(name)) }
    }
}

enum HostFactsProbe {
    static var machine: String {
        var info = utsname()
        uname(&info)
        return withUnsafePointer(to: &info.machine) {
            $0.withMemoryRebound(to: CChar.self, capacity: 65) { String(cString: $0) }
        }
    }
}
