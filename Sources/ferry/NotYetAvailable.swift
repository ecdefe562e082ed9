import ArgumentParser

struct NotYetAvailable: Error, CustomStringConvertible {
    var command: String
    var description: String { "ferry \(command): not available in this build yet" }
}
