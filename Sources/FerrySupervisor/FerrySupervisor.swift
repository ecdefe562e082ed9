/// Namespace marker for the FerrySupervisor module; its types live in their own files.
public enum FerrySupervisorModule {
    public static let name = "FerrySupervisor"
}
