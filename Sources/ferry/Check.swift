import ArgumentParser

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Parse, validate and lint a configuration (like nginx -t).")
    @OptionGroup var options: ConfigOption

    func run() throws {
        throw NotYetAvailable(command: "check")
    }
}
