import KVMCore

/// The one way kvmstat's programs change an element of a hash map: find the key and change
/// its value in place; insert a key not there yet; if another CPU inserted it first, change
/// theirs; if the map is full, count the hit in `dropped[0]` so the keys kept stay exact
/// and the loss is known.
enum MapUpdate {
    /// One more (`count`), r7 more (`add`), or r7 if lower (`min`) or higher (`max`).
    enum Operation { case count, add, min, max }

    /// Emits the update of `map` at the key on the stack at `key`; `scratch` is 8 free bytes
    /// of stack (the value to insert) with 4 more below it (the dropped map's key). Labels are
    /// made unique by `tag`; the code continues after it whatever happened.
    static func emit(_ code: inout BPFAssembler, _ operation: Operation, map: FileDescriptor, key: Int16,
                     scratch: Int16, dropped: FileDescriptor, tag: String) {
        let next = "next-\(tag)"
        // r0: the value found, not null.
        func change() {
            switch operation {
            case .count: code.emit(.move(.r1, 1), .atomicAdd(.r0, 0, .r1))
            case .add: code.emit(.atomicAdd(.r0, 0, .r7))
            case .min:
                code.emit(.load(.double, .r1, .r0, 0))
                code.jump(to: next) { .jumpIfGreaterOrEqual(.r7, .r1, $0) }
                code.emit(.store(.double, .r0, 0, .r7))
            case .max:
                code.emit(.load(.double, .r1, .r0, 0))
                code.jump(to: next) { .jumpIfLessOrEqual(.r7, .r1, $0) }
                code.emit(.store(.double, .r0, 0, .r7))
            }
            code.jump(to: next) { .jump($0) }
        }
        func lookUp(orElse label: String) {
            code.emit(BPFInstruction.loadMap(.r1, map))
            code.emit(.move(.r2, .r10), .add(.r2, Int32(key)))
            code.emit(.call(.mapLookupElem))
            code.jump(to: label) { .jumpIfEqual(.r0, 0, $0) }
        }
        lookUp(orElse: "insert-\(tag)")
        change()
        code.label("insert-\(tag)")
        if operation == .count {
            code.emit(.store(.double, .r10, scratch, 1))
        } else {
            code.emit(.store(.double, .r10, scratch, .r7))
        }
        code.emit(BPFInstruction.loadMap(.r1, map))
        code.emit(.move(.r2, .r10), .add(.r2, Int32(key)), .move(.r3, .r10), .add(.r3, Int32(scratch)))
        code.emit(.move(.r4, Int32(BPFSystem.updateOnlyNew)))
        code.emit(.call(.mapUpdateElem))
        code.jump(to: next) { .jumpIfEqual(.r0, 0, $0) }
        // Another CPU inserted it first (the idle task's key is every CPU's).
        lookUp(orElse: "full-\(tag)")
        change()
        code.label("full-\(tag)")
        code.emit(.store(.word, .r10, scratch - 4, 0))
        code.emit(BPFInstruction.loadMap(.r1, dropped))
        code.emit(.move(.r2, .r10), .add(.r2, Int32(scratch) - 4))
        code.emit(.call(.mapLookupElem))
        code.jump(to: next) { .jumpIfEqual(.r0, 0, $0) }
        code.emit(.move(.r1, 1), .atomicAdd(.r0, 0, .r1))
        code.label(next)
    }
}
