/// Nothing silent: a source with nothing to show says why, once, and again only after it
/// had something to show in between (a log started before its guests says so at start, not
/// every sample).
struct EmptyNotice: Sendable {
    private var said = false

    /// The message to say now, if any, given whether the source has nothing to show.
    mutating func check(empty: Bool, _ message: @autoclosure () -> String) -> String? {
        guard empty else {
            said = false
            return nil
        }
        guard !said else { return nil }
        said = true
        return message()
    }
}
