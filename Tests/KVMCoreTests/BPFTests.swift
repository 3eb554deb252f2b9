import Glibc
import KVMCore
import Testing

/// The bpf(2) wrappers against the real kernel (root), and the assembler's jumps.
@Suite struct BPFTests {
    static let system = BPFSystem(syscallNumber: 321)  // x86_64, where this suite runs

    @Test func jumpsAreResolvedToTheirLabels() {
        var code = BPFAssembler()
        code.jump(to: "end") { .jumpIfEqual(.r0, 0, $0) }
        code.emit(.move(.r0, 1), .move(.r0, 2))
        code.label("end")
        code.emit(.exit)
        let program = code.assembled()
        #expect(program[0].offset == 2)
        #expect(program.count == 4 && program[3] == .exit)
        // dst in the low nibble, src in the high one, as struct bpf_insn has them.
        #expect(BPFInstruction.move(.r6, .r1).registers == 0x16)
    }

    /// Every element comes back, in batches and key by key (older kernels), and keys deleted
    /// are gone from both.
    @Test(.enabled(if: getuid() == 0 && uname().contains("x86_64"), "needs root on x86_64"))
    func everyElementInBatchesAndKeyByKey() throws {
        let map = try Self.system.createMap(.hash, keySize: 4, valueSize: 8, maxEntries: 64, name: "kvmstat_test")
        defer { map.close() }
        for index in UInt32(1)...20 {
            var key = index
            var value = UInt64(index) * 100
            try withUnsafeBytes(of: &key) { k throws in
                try withUnsafeBytes(of: &value) { v throws in try Self.system.update(map, key: k.baseAddress!, value: v.baseAddress!) }
            }
        }
        var gone: UInt32 = 7
        _ = try withUnsafeBytes(of: &gone) { k throws in try Self.system.delete(map, key: k.baseAddress!) }
        for startBatched in [true, false] {
            var batched = startBatched
            let all = try Self.system.elements(map, keySize: 4, valueSize: 8, batched: &batched)
            #expect(all.count == 19)
            var found: [UInt32: UInt64] = [:]
            all.keys.withUnsafeBytes { keys in
                all.values.withUnsafeBytes { values in
                    for i in 0..<all.count {
                        found[keys.load(fromByteOffset: i * 4, as: UInt32.self)] = values.load(fromByteOffset: i * 8, as: UInt64.self)
                    }
                }
            }
            #expect(found[7] == nil && found[20] == 2000 && found.count == 19)
        }
    }

    static func uname() -> String {
        var name = utsname()
        Glibc.uname(&name)
        return withUnsafeBytes(of: &name.machine) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
