/// One eBPF instruction as the kernel reads it (`struct bpf_insn`, 8 bytes): an opcode, the
/// destination and source registers in one byte, a signed 16-bit offset, a 32-bit immediate.
public struct BPFInstruction: Sendable, Equatable {
    public var opcode: UInt8
    public var registers: UInt8
    public var offset: Int16
    public var immediate: Int32

    public init(_ opcode: UInt8, dst: BPFRegister = .r0, src: BPFRegister = .r0, offset: Int16 = 0, immediate: Int32 = 0) {
        self.opcode = opcode
        registers = dst.rawValue | src.rawValue << 4
        self.offset = offset
        self.immediate = immediate
    }
}

public enum BPFRegister: UInt8, Sendable {
    /// r0: return values; r1–r5: arguments (r1 holds the context at entry); r6–r9: kept
    /// across calls; r10: the read-only frame pointer.
    case r0, r1, r2, r3, r4, r5, r6, r7, r8, r9, r10
}

/// The instructions kvmstat's programs use, named as the kernel's assembler macros are.
extension BPFInstruction {
    /// Operand sizes of loads and stores.
    public enum Size: UInt8, Sendable {
        case word = 0x00, half = 0x08, byte = 0x10, double = 0x18

        /// The size of a field of `bytes` bytes, nil for another width.
        public init?(bytes: Int) {
            switch bytes {
            case 1: self = .byte
            case 2: self = .half
            case 4: self = .word
            case 8: self = .double
            default: return nil
            }
        }
    }

    /// dst = src (64-bit).
    public static func move(_ dst: BPFRegister, _ src: BPFRegister) -> Self { Self(0xbf, dst: dst, src: src) }
    /// dst = imm (64-bit, sign-extended).
    public static func move(_ dst: BPFRegister, _ imm: Int32) -> Self { Self(0xb7, dst: dst, immediate: imm) }
    /// dst += imm (64-bit).
    public static func add(_ dst: BPFRegister, _ imm: Int32) -> Self { Self(0x07, dst: dst, immediate: imm) }
    /// dst -= src (64-bit).
    public static func subtract(_ dst: BPFRegister, _ src: BPFRegister) -> Self { Self(0x1f, dst: dst, src: src) }
    /// dst >>= imm (64-bit, logical).
    public static func shiftRight(_ dst: BPFRegister, _ imm: Int32) -> Self { Self(0x77, dst: dst, immediate: imm) }
    /// dst = *(size *)(src + offset), zero-extended.
    public static func load(_ size: Size, _ dst: BPFRegister, _ src: BPFRegister, _ offset: Int16) -> Self {
        Self(0x61 | size.rawValue, dst: dst, src: src, offset: offset)
    }
    /// *(size *)(dst + offset) = src.
    public static func store(_ size: Size, _ dst: BPFRegister, _ offset: Int16, _ src: BPFRegister) -> Self {
        Self(0x63 | size.rawValue, dst: dst, src: src, offset: offset)
    }
    /// *(size *)(dst + offset) = imm.
    public static func store(_ size: Size, _ dst: BPFRegister, _ offset: Int16, _ imm: Int32) -> Self {
        Self(0x62 | size.rawValue, dst: dst, offset: offset, immediate: imm)
    }
    /// Atomically *(u64 *)(dst + offset) += src.
    public static func atomicAdd(_ dst: BPFRegister, _ offset: Int16, _ src: BPFRegister) -> Self {
        Self(0xdb, dst: dst, src: src, offset: offset)
    }
    /// dst = the map with descriptor `map` (two instructions: a 64-bit immediate load).
    public static func loadMap(_ dst: BPFRegister, _ map: FileDescriptor) -> [Self] {
        [Self(0x18, dst: dst, src: .r1, immediate: map.rawValue), Self(0)]
    }
    /// Calls kernel helper `helper`: arguments in r1–r5, result in r0.
    public static func call(_ helper: Helper) -> Self { Self(0x85, immediate: helper.rawValue) }
    /// if dst == imm: skip `offset` instructions.
    public static func jumpIfEqual(_ dst: BPFRegister, _ imm: Int32, _ offset: Int16) -> Self {
        Self(0x15, dst: dst, offset: offset, immediate: imm)
    }
    /// if dst != imm: skip `offset` instructions.
    public static func jumpIfNotEqual(_ dst: BPFRegister, _ imm: Int32, _ offset: Int16) -> Self {
        Self(0x55, dst: dst, offset: offset, immediate: imm)
    }
    /// if dst <= src (unsigned): skip `offset` instructions.
    public static func jumpIfLessOrEqual(_ dst: BPFRegister, _ src: BPFRegister, _ offset: Int16) -> Self {
        Self(0xbd, dst: dst, src: src, offset: offset)
    }
    /// if dst >= src (unsigned): skip `offset` instructions.
    public static func jumpIfGreaterOrEqual(_ dst: BPFRegister, _ src: BPFRegister, _ offset: Int16) -> Self {
        Self(0x3d, dst: dst, src: src, offset: offset)
    }
    /// Skip `offset` instructions.
    public static func jump(_ offset: Int16) -> Self { Self(0x05, offset: offset) }
    public static let exit = Self(0x95)

    public enum Helper: Int32, Sendable {
        case mapLookupElem = 1
        case mapUpdateElem = 2
        case mapDeleteElem = 3
        case ktimeGetNanoseconds = 5
        case getCurrentPidTgid = 14
        /// The value given when the program was linked to this perf event (Linux 5.15).
        case getAttachCookie = 174
    }
}

/// A program being assembled: instructions, and jumps to labels resolved at the end (an
/// offset counts the instructions skipped after the jump).
public struct BPFAssembler: Sendable {
    private var code: [BPFInstruction] = []
    private var labels: [String: Int] = [:]
    private var jumps: [(index: Int, label: String)] = []

    public init() {}

    public mutating func emit(_ instructions: BPFInstruction...) { code += instructions }
    public mutating func emit(_ instructions: [BPFInstruction]) { code += instructions }

    /// A jump (made by `make` from its offset) to `label`, defined before or after.
    public mutating func jump(to label: String, _ make: (Int16) -> BPFInstruction) {
        jumps.append((code.count, label))
        code.append(make(0))
    }

    public mutating func label(_ name: String) { labels[name] = code.count }

    /// The program; every label jumped to must be defined.
    public func assembled() -> [BPFInstruction] {
        var program = code
        for (index, label) in jumps {
            program[index].offset = Int16(labels[label]! - index - 1)
        }
        return program
    }
}
