/// Namespace marker for the FerryConfig module.
public enum FerryConfigModule {
    public static let name = "FerryConfig"
}
