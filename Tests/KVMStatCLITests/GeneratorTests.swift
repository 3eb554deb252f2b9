import Foundation
import Testing

/// Scripts/generate-exit-reasons --check against small fake kernel trees.
@Suite struct GeneratorTests {
    private let script = packageRoot + "/Scripts/generate-exit-reasons"

    /// A kernel tree whose headers hold exactly what upstream's tables hold (a subset of ours).
    private func makeTree(vmxExtra: String = "", svmHLT: String = "0x078") throws -> String {
        let dir = NSTemporaryDirectory() + "kvmstat-kernel-" + UUID().uuidString
        let files: [String: String] = [
            "Makefile": "VERSION = 9\nPATCHLEVEL = 8\nSUBLEVEL = 7\nEXTRAVERSION = -test\n",
            "arch/x86/include/uapi/asm/vmx.h": """
                #define EXIT_REASON_EXCEPTION_NMI       0
                #define EXIT_REASON_HLT                 12
                \(vmxExtra)
                #define VMX_EXIT_REASONS \\
                \t{ EXIT_REASON_HLT, "HLT" }
                """,
            "arch/x86/include/uapi/asm/svm.h": """
                #define SVM_EXIT_READ_CR0      0x000
                #define SVM_EXIT_HLT           \(svmHLT)
                #define SVM_EXIT_SW\t\t\t\t0xf0000000
                #define SVM_EXIT_ERR           -1
                #define SVM_VMGEXIT_MMIO_READ\t\t\t0x80000001
                """,
            "arch/arm64/include/asm/esr.h": """
                #define ESR_ELx_EC_UNKNOWN\tUL(0x00)
                #define ESR_ELx_EC_WFx\t\tUL(0x01)
                #define ESR_ELx_EC_MAX\t\tUL(0x3F)
                #define ESR_ELx_EC_SHIFT\t(26)
                #define ESR_ELx_EC(esr)\t\t(((esr) & ESR_ELx_EC_MASK) >> ESR_ELx_EC_SHIFT)
                """,
            "include/uapi/linux/kvm.h": """
                #define KVM_EXIT_HYPERV_SYNIC          1
                #define KVM_EXIT_UNKNOWN          0
                #define KVM_EXIT_IO               2
                #define KVM_EXIT_DCR              15 /* deprecated */

                #define KVM_EXIT_IO_IN  0
                """,
        ]
        for (path, content) in files {
            let full = dir + "/" + path
            try FileManager.default.createDirectory(
                atPath: (full as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true)
            try content.write(toFile: full, atomically: false, encoding: .utf8)
        }
        return dir
    }

    @Test func committedTablesCoverASubsetTree() throws {
        let tree = try makeTree()
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let result = try run("/bin/sh", [script, "--kernel", tree, "--check"])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("9.8.7-test"))
    }

    @Test func checkListsMissingAndChangedEntries() throws {
        let tree = try makeTree(vmxExtra: "#define EXIT_REASON_FUTURE_THING      250",
                                svmHLT: "0x099")
        defer { try? FileManager.default.removeItem(atPath: tree) }
        let result = try run("/bin/sh", [script, "--kernel", tree, "--check"])
        #expect(result.status != 0)
        #expect(result.stdout.contains("missing FUTURE_THING = 250"))
        #expect(result.stdout.contains("HLT is 120 in the committed table but 153"))
    }

    /// A copy of the script and the committed tables, so writing touches nothing real.
    private func packageCopy() throws -> String {
        let dir = NSTemporaryDirectory() + "kvmstat-package-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/Scripts", withIntermediateDirectories: true)
        try fm.copyItem(atPath: script, toPath: dir + "/Scripts/generate-exit-reasons")
        for module in ["KVMArchX86", "KVMArchARM64", "KVMCore"] {
            try fm.createDirectory(atPath: dir + "/Sources/" + module, withIntermediateDirectories: true)
            try fm.copyItem(atPath: packageRoot + "/Sources/\(module)/Generated", toPath: dir + "/Sources/\(module)/Generated")
        }
        return dir
    }

    @Test func writingAnOlderTreeIsRefusedUnlessForced() throws {
        let tree = try makeTree()
        let copy = try packageCopy()
        defer {
            try? FileManager.default.removeItem(atPath: tree)
            try? FileManager.default.removeItem(atPath: copy)
        }
        let table = copy + "/Sources/KVMCore/Generated/UserspaceExitReasons.swift"
        let before = try String(contentsOfFile: table, encoding: .utf8)
        let refused = try run("/bin/sh", [copy + "/Scripts/generate-exit-reasons", "--kernel", tree])
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("UserspaceExitReasons: MEMORY_FAULT = 39 would be lost"), "\(refused.stderr)")
        #expect(refused.stderr.contains("--force"))
        #expect(try String(contentsOfFile: table, encoding: .utf8) == before, "nothing written")
        let forced = try run("/bin/sh", [copy + "/Scripts/generate-exit-reasons", "--kernel", tree, "--force"])
        #expect(forced.status == 0, "\(forced.stderr)")
        let after = try String(contentsOfFile: table, encoding: .utf8)
        #expect(!after.contains("MEMORY_FAULT") && after.contains("Linux 9.8.7-test"))
    }

    @Test func missingTreeIsAnError() throws {
        let result = try run("/bin/sh", [script, "--kernel", "/nonexistent", "--check"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("not a directory"))
    }
}
