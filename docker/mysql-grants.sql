-- The exactly-once MySQL sink lists prepared XA transactions on restore (XA RECOVER).
CREATE USER IF NOT EXISTS 'streamflow'@'%' IDENTIFIED BY 'streamflow';
GRANT ALL PRIVILEGES ON streamflow.* TO 'streamflow'@'%';
GRANT XA_RECOVER_ADMIN ON *.* TO 'streamflow'@'%';
